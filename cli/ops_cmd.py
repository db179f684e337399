"""`deploy reap`, `deploy cost`, `deploy status`: option parsing over agentdeploy.ops.

boto3, httpx and matplotlib are imported inside the commands, never when this module loads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_aws_options = [
    click.option("--region", help="AWS region. Stack commands use the plan's region and refuse another (exit 2); "
                                  "this only confirms it (it wins over AWS_REGION)."),
    click.option("--profile", help="AWS profile to use."),
]


def aws_options(fn: F) -> F:
    for option in reversed(_aws_options):
        fn = option(fn)
    return fn


@click.command("reap")
@click.option("--stack", required=True, help="Stack whose GPU fleets to consider (by tag).")
@click.option("--idle-minutes", type=click.IntRange(min=1), help="Idle window (default: the plan's per-agent value, else 15).")
@click.option("--dry-run", is_flag=True, help="Say what would be scaled to zero; change nothing.")
@click.option("--treat-missing-as-idle", is_flag=True,
              help="Scale a running fleet with no demand datapoints in the window too (default: keep it and say so).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@aws_options
def reap(stack: str, idle_minutes: int | None, dry_run: bool, treat_missing_as_idle: bool, as_json: bool,
         region: str | None, profile: str | None) -> None:
    """Scale the stack's idle GPU fleets to zero (DesiredCapacity; MinSize is the plan's).

    Only Auto Scaling groups tagged agentdeploy:stack=STACK and agentdeploy:role=gpu-fleet are
    touched, never one with demand in the window, one up for less than the window, one whose
    MinSize keeps a warm floor, or a running one with no demand data (unless
    --treat-missing-as-idle). Safe from cron.
    The region is the plan's where the stack config is here (else --region / AWS_REGION).
    Exit codes: 0 done, 2 unknown stack, stale plan file or a region other than the plan's,
    4 credentials/permission, 1 AWS failed, 5 some fleets failed (--json still lists every fleet).
    """
    from agentdeploy.ops.commands import run_reap

    reports, used_region, error = run_reap(stack, idle_minutes, dry_run, region, profile,
                                           treat_missing_as_idle=treat_missing_as_idle)
    if as_json:
        doc = {"stack": stack, "region": used_region, "dry_run": dry_run,
               "treat_missing_as_idle": treat_missing_as_idle, "fleets": [asdict(r) for r in reports],
               "error": None if error is None else error.to_dict()}
        click.echo(json.dumps(doc, indent=2))
    else:
        from agentdeploy.ops.tables import print_reap

        print_reap(reports, stack, used_region, dry_run)
    if error is not None:
        # The reports are out (one JSON document, or the table); the error goes to stderr with its code.
        click.echo(error.render(), err=True)
        click.get_current_context().exit(error.exit_code)


@click.command("cost")
@click.option("--stack", required=True, help="Stack to report on.")
@click.option("--since", help="Start date, YYYY-MM-DD (default: the 1st of this month, UTC).")
@click.option("--until", help="End date or datetime (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--chart", type=click.Path(path_type=Path), help="Write a bar chart (PNG/SVG/PDF) of actual vs projected vs budget.")
@click.option("--drift", "drift_pct", type=float, default=25.0, show_default=True, help="Flag agents whose spend is this % off the projection.")
@click.option("--horizon", type=click.Choice(["launch", "month_12"]), default="launch", show_default=True, help="Which projection to compare with.")
@click.option("--claude-source", type=click.Choice(["auto", "admin", "gateway"]), default="auto", show_default=True,
              help="Claude spend from the Admin API (needs ANTHROPIC_ADMIN_KEY), the gateway's metric, or auto.")
@click.option("--admin-url", help="Admin API base URL (default: ANTHROPIC_ADMIN_BASE_URL or https://api.anthropic.com).")
@click.option("--stack-key-name", "stack_key_template", default="{stack}", show_default=True,
              help="How the stack's Anthropic key is named in the Console (its usage checks the gateway's per-agent split).")
@click.option("--key-name", "key_template", default="{stack}/{agent}", show_default=True,
              help="How a per-agent API key is named, where an operator made one (its usage is then exact).")
@click.option("--workspace-id", help="Only count Claude usage of this workspace.")
@click.option("--gpu-source", type=click.Choice(["ec2", "cost-explorer"]), default="ec2", show_default=True,
              help="GPU spend from EC2 instance hours x catalog price, or from Cost Explorer by the agent tag.")
@click.option("--plan", "plan_json", type=click.Path(path_type=Path),
              help="Use this plan file or plan JSON (`deploy plan FILE --write` / `--json`) as it is, instead of the stack's.")
@aws_options
def cost(stack: str, since: str | None, until: str | None, as_json: bool, chart: Path | None, drift_pct: float, horizon: str,
         claude_source: str, admin_url: str | None, stack_key_template: str, key_template: str, workspace_id: str | None,
         gpu_source: str, plan_json: Path | None, region: str | None, profile: str | None) -> None:
    """Actual spend per agent against the plan's projection and budget.

    Claude: the stack provisions one Anthropic key for all its agents, so the split per agent is
    the gateway's SpendUSD metric; the Admin API's usage of that key (named STACK), priced with
    the catalog, checks it, and the billed cost report checks the catalog. An agent with a key of
    its own (STACK/AGENT) is read from the Admin API exactly. GPU: instance hours x catalog price
    (spot or on-demand). A stack without GPU agents read through the Admin API needs no AWS
    credentials. Exit codes: 0 reported, 2 unknown stack, stale plan file, bad option or a region
    other than the plan's, 4 missing credentials, 1 an API failed.
    """
    from agentdeploy.ops.commands import run_cost

    report = run_cost(stack, since, until, plan_json, claude_source, admin_url, key_template, workspace_id,
                      drift_pct, horizon, region, profile, gpu_source, stack_key_template)
    if chart is not None:
        from agentdeploy.ops.cost_chart import write_cost_chart
        from agentdeploy.planner import load_catalog

        write_cost_chart(report, chart, load_catalog().assumptions.days_per_month)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from agentdeploy.ops.tables import print_cost

    print_cost(report)
    if chart is not None:
        click.echo(f"chart written to {chart}")


@click.command("status")
@click.option("--stack", required=True, help="Stack to inspect.")
@click.option("--gateway-url", envvar="AGENTDEPLOY_GATEWAY_URL", help="Gateway base URL; its /readyz is checked.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--plan", "plan_json", type=click.Path(path_type=Path),
              help="Use this plan file or plan JSON (`deploy plan FILE --write` / `--json`) as it is, instead of the stack's.")
@aws_options
def status(stack: str, gateway_url: str | None, as_json: bool, plan_json: Path | None, region: str | None, profile: str | None) -> None:
    """Per agent: route, fleet desired/healthy and spot vs on-demand, budget used, alarms in ALARM.

    Not healthy (the output's `problems` say why): an alarm firing, the gateway not ready, a GPU
    agent with no fleet, or a fleet with fewer healthy instances than desired. Alarms that only
    drive scaling policies (target tracking, scale-to-zero, wake) are the scale loop at work: they
    are listed as `scaling_alarms`, never as faults. The region is the plan's.
    Exit codes: 0 reported (see `healthy` in the output), 2 unknown stack, stale plan file or a
    region other than the plan's, 4 credentials, 1 AWS failed.
    """
    from agentdeploy.ops.commands import run_status

    result = run_status(stack, plan_json, gateway_url, region, profile)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    from agentdeploy.ops.tables import print_status

    print_status(result)
