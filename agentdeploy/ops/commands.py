"""What `deploy reap / cost / status` do, between parsed options and printed output.

Kept out of the click module so the CLI stays glue and these run (and are tested) without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from agentdeploy.errors import DeployError, InvalidInput
from agentdeploy.ops.aws import AwsSession
from agentdeploy.ops.reaper import Clock, FleetReport, reap_outcome, utcnow

DEFAULT_IDLE_MINUTES = 15
#: The environment variables that name a region to boto3 and to the AWS CLI / SDKs.
REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")


def stack_region(planned: str, given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The region a stack-scoped command works in: the plan's, where the stack was provisioned.

    A --region or AWS_REGION naming another region is refused (exit 2) rather than obeyed: read
    there, a stack's fleets and alarms are simply absent, and "nothing to reap" or "healthy" would
    be said about the wrong place (a CI job that exports one region for every stack does this).
    An explicit --region equal to the plan's wins over the environment: the caller said so.
    """
    env = os.environ if environ is None else environ
    if given:
        if given != planned:
            raise InvalidInput(
                f"--region {given} disagrees with the stack's plan, which provisions it in {planned}",
                hint=f"drop --region (the plan's region is used), or pass --region {planned}",
            )
        return planned
    for name in REGION_ENV:
        value = env.get(name)
        if value and value != planned:
            raise InvalidInput(
                f"{name}={value} disagrees with the stack's plan, which provisions it in {planned}",
                hint=f"pass --region {planned} (it wins over {name}), or unset {name}",
            )
    return planned


def parse_when(value: str | None, name: str, default: datetime) -> datetime:
    """'2026-11-01' (midnight UTC) or an ISO 8601 datetime; naive values are UTC."""
    if value is None:
        return default
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not a date", hint=f"use YYYY-MM-DD, e.g. {name} 2026-11-01") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stack_idle_minutes(stack: str) -> tuple[dict[str, int] | None, bool, str | None]:
    """Per-agent idle windows from the stack's plan, whether the stack config exists here, and the
    plan's region.

    A decision file that does not plan leaves reap on its default window (it is safe from cron);
    a stale plan file does not: it says the stack is about to change, so a person should look.
    """
    from agentdeploy.planner.planfile import StalePlan
    from agentdeploy.stackconfig import load_stack_config

    try:
        load_stack_config(stack)
    except InvalidInput:
        return None, False, None
    try:
        from agentdeploy.ops.stackplan import stack_plan

        plan, _ = stack_plan(stack)
    except StalePlan:
        raise
    except DeployError:
        return None, True, None
    return {a.name: a.fleet.idle_minutes for a in plan.agents if a.fleet is not None}, True, plan.region


def run_reap(
    stack: str,
    idle_minutes: int | None,
    dry_run: bool,
    region: str | None,
    profile: str | None,
    clock: Clock = utcnow,
    treat_missing_as_idle: bool = False,
) -> tuple[list[FleetReport], str, DeployError | None]:
    """Reports, the region used, and the error the writes ended in (exit 1/4/5), if any.

    The idle window: --idle-minutes, else the plan's per-agent fleet.idle_minutes where the stack
    config is here, else 15 minutes. The region: the plan's where the stack config is here
    (a conflicting --region or AWS_REGION is exit 2), else --region / the environment."""
    planned, known, plan_region = _stack_idle_minutes(stack)
    window: int | dict[str, int]
    if idle_minutes is not None:
        window = idle_minutes
    elif planned:
        window = {**{"": DEFAULT_IDLE_MINUTES}, **planned}
    else:
        window = DEFAULT_IDLE_MINUTES
    if plan_region is not None:
        region = stack_region(plan_region, region)
    session = AwsSession(region=region, profile=profile)
    reports, error = reap_outcome(
        session.client("autoscaling"), session.client("ec2"), session.client("cloudwatch"),
        stack=stack, idle_minutes=window, dry_run=dry_run, clock=clock, treat_missing_as_idle=treat_missing_as_idle,
    )
    if not reports and not known:
        raise InvalidInput(
            f"stack {stack!r} not found: no Auto Scaling group tagged agentdeploy:stack={stack} in {session.region}, "
            f"and no stacks/Pulumi.{stack}.yaml here",
            hint="check the stack name and --region (or AWS_REGION)",
        )
    return reports, session.region, error


def run_cost(
    stack: str,
    since: str | None,
    until: str | None,
    plan_json: Path | None,
    claude_source: str,
    admin_url: str | None,
    key_template: str,
    workspace_id: str | None,
    drift_pct: float,
    horizon: str,
    region: str | None,
    profile: str | None,
    gpu_source: str = "ec2",
    stack_key_template: str = "{stack}",
):
    import os

    from agentdeploy.ops.anthropic_admin import KEY_ENV, AdminClient
    from agentdeploy.ops.cost_sources import collect_report, metered_spend
    from agentdeploy.ops.stackplan import stack_plan

    now = datetime.now(UTC)
    end = parse_when(until, "--until", now)
    start = parse_when(since, "--since", end.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    if start >= end:
        raise InvalidInput(f"--since {start.date()} is not before {end.isoformat()}", hint="pick an earlier --since")
    if drift_pct <= 0:
        raise InvalidInput("--drift must be a positive percentage", hint="e.g. --drift 25")
    if "{agent}" not in key_template:
        raise InvalidInput(f"--key-name {key_template!r} must contain {{agent}}", hint="e.g. --key-name '{stack}/{agent}'")
    try:
        stack_key_template.format(stack=stack)
    except (KeyError, IndexError, ValueError):
        raise InvalidInput(f"--stack-key-name {stack_key_template!r} may use {{stack}} only",
                           hint="e.g. --stack-key-name '{stack}' or a literal key name") from None
    plan, catalog = stack_plan(stack, plan_json)
    use_admin = claude_source == "admin" or (claude_source == "auto" and bool(os.environ.get(KEY_ENV)))
    admin = AdminClient(base_url=admin_url) if use_admin else None
    session = AwsSession(region=stack_region(plan.region, region), profile=profile)
    try:
        report = collect_report(
            plan, catalog, stack, start, end, session.client("ec2"), session.client("cloudwatch"), admin,
            threshold=drift_pct / 100, horizon=horizon, key_template=key_template, workspace_id=workspace_id,
            cost_explorer=session.client("ce") if gpu_source == "cost-explorer" else None,
            stack_key_template=stack_key_template, autoscaling=session.client("autoscaling"),
        )
    finally:
        if admin is not None:
            admin.close()
    if not use_admin:
        report.warnings.insert(0, f"Claude spend from {metered_spend(plan).what} only ({KEY_ENV} not set)")
    return report


def run_status(stack: str, plan_json: Path | None, gateway_url: str | None, region: str | None, profile: str | None) -> Any:
    from agentdeploy.ops.stackplan import stack_plan
    from agentdeploy.ops.status import collect_status

    plan, catalog = stack_plan(stack, plan_json)
    session = AwsSession(region=stack_region(plan.region, region), profile=profile)
    return collect_status(
        plan, catalog, stack, session.region,
        session.client("autoscaling"), session.client("ec2"), session.client("cloudwatch"), gateway_url,
    )
