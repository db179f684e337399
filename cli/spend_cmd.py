"""`deploy spend publish`: option parsing over agentdeploy.ops.spend_publish.

boto3 and httpx are imported inside the command, never when this module loads.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from agentdeploy.cli.ops_cmd import aws_options


@click.group("spend")
def spend() -> None:
    """Spend figures for stacks without a gateway."""


@spend.command("publish")
@click.option("--stack", required=True, help="Gateway-less stack whose agents' Claude spend to publish.")
@click.option("--since", help="First UTC day to (re)publish, YYYY-MM-DD (default: yesterday; at most 14 days ago).")
@click.option("--until", help="Read up to this time (default: now).")
@click.option("--plan", "plan_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A plan JSON (`deploy plan FILE --write`) to use instead of the stack's decision file.")
@click.option("--admin-url", help="Admin API base URL (default: ANTHROPIC_ADMIN_BASE_URL or api.anthropic.com).")
@click.option("--key-name", "key_template", default="{stack}/{agent}", show_default=True,
              help="Console name of an agent's own API key.")
@click.option("--stack-key-name", "stack_key_template", default="{stack}", show_default=True,
              help="Console name of the stack's shared API key.")
@click.option("--dry-run", is_flag=True, help="Read and attribute; publish nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@aws_options
def publish(stack: str, since: str | None, until: str | None, plan_json: Path | None, admin_url: str | None,
            key_template: str, stack_key_template: str, dry_run: bool, as_json: bool,
            region: str | None, profile: str | None) -> None:
    """Publish each agent's Claude spend per UTC day (metric SpendUSDDay) for the spend alarms.

    Reads the Usage and Cost Admin API (ANTHROPIC_ADMIN_KEY) and puts each day's running total;
    the alarms take the day's Maximum, so running it again (from cron, GitOps) never counts twice.
    Only for stacks the planner left without a gateway: a gateway publishes SpendUSD itself.
    Exit codes: 0 published, 2 a stack with a gateway or bad options, 4 missing key or
    credentials, 1 the Admin API or CloudWatch failed.
    """
    from agentdeploy.ops.spend_publish import run_publish

    result = run_publish(stack, since, until, plan_json, admin_url, key_template, stack_key_template,
                         dry_run=dry_run, region=region, profile=profile)
    if as_json:
        click.echo(json.dumps({**asdict(result), "dry_run": dry_run}, indent=2))
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        return
    for d in result.days:
        click.echo(f"{d.day}  {d.agent:<40} ${d.usd:,.4f}  ({d.source})")
    verb = "would publish" if dry_run else "published"
    click.echo(f"{verb} {len(result.days)} SpendUSDDay datapoints for stack {stack}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
