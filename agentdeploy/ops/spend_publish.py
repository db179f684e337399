"""`deploy spend publish`: a gateway-less stack's Claude spend, per agent, for its spend alarms.

With a gateway, the gateway prices each response and publishes `SpendUSD` increments. Without
one, clients call Claude directly and only Anthropic sees the traffic, so this reads the Usage
and Cost Admin API (usage by API key, model and service tier, priced with the catalog exactly as
`deploy cost` prices it) and publishes each agent's spend per UTC day.

Why a day's running total and not increments: the Admin API reports a day's usage as a whole
(and revises it as late usage lands), and a scheduled job runs again and again. Publishing the
total so far, under `SpendUSDDay` with every datapoint stamped inside its own day, lets the
alarms take the day's Maximum: publishing the same total twice, or a revised one, never counts
twice. Increments would need a watermark kept somewhere strongly consistent (CloudWatch's own
reads lag its writes), and a crash between writing the metric and the watermark double counts.

Who spent what: an agent with a key of its own in the Console (`<stack>/<agent>`) is exact.
Usage of the stack's shared key (`<stack>`) goes to the one keyless agent whose planned model
and tier (batch or not) match the row; where several match, each gets all of it (an alarm may
fire early, never late) and the result says so. Usage matching no agent is reported, unpublished.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_NAMESPACE, METRIC_SPEND_DAY_USD
from agentdeploy.ops.cost import KEY_NAME_TEMPLATE, STACK_KEY_TEMPLATE, key_owners, price_usage, resolve_model
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import Plan

DAY = timedelta(days=1)
#: What to do without ANTHROPIC_ADMIN_KEY: this command has no other source to fall back on.
ADMIN_KEY_HINT = ("create an Admin key (sk-ant-admin...) in the Claude Console and export it where `deploy spend publish` "
                  "runs (the GitOps job reads it from its secret store): the Usage and Cost Admin API is the only record "
                  "of a gateway-less stack's spend")
#: CloudWatch refuses datapoints stamped more than two weeks in the past.
MAX_AGE = timedelta(days=14)
#: PutMetricData takes at most 1,000 metric datums per request (CloudWatch quotas).
MAX_DATUMS = 1000


@dataclass
class DaySpend:
    agent: str
    day: str
    usd: float
    #: how the spend was attributed: "own-key", "stack-key", "stack-key-shared" (several agents
    #: matched a row and each got all of it), or "none" (no usage that day)
    source: str
    #: the timestamp the datapoint carries (inside its day)
    timestamp: str = ""


@dataclass
class PublishResult:
    stack: str
    since: str
    until: str
    days: list[DaySpend] = field(default_factory=list)
    #: catalog-priced usage of this stack's keys no agent could be given
    unattributed_usd: float = 0.0
    warnings: list[str] = field(default_factory=list)
    published: int = 0


def day_start(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def days_between(since: datetime, until: datetime) -> list[datetime]:
    """The UTC days from the one holding `since` to the one holding `until`."""
    out, day = [], day_start(since)
    while day <= until:
        out.append(day)
        day += DAY
    return out


def stamp(day: datetime, now: datetime) -> datetime:
    """A datapoint's timestamp: now for today, the day's last second for a past day. Inside its
    day either way, so a day-aligned or a sliding 24-hour window sees the day's latest total."""
    return min(now, day + DAY - timedelta(seconds=1))


def _matches(agent_model: str, agent_batch: bool, row: Any, catalog: Catalog) -> bool:
    model = resolve_model(row.model, catalog)
    planned = resolve_model(agent_model, catalog)
    return model is not None and model == planned and (row.service_tier == "batch") == agent_batch


def attribute_days(
    rows: Iterable[Any], plan: Plan, catalog: Catalog, owners: dict[str, str], stack_key_ids: set[str]
) -> tuple[dict[tuple[str, str], Decimal], dict[tuple[str, str], str], Decimal, list[str]]:
    """Per (agent, day) spend, its source, the unattributed rest and warnings (pure)."""
    spend: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    source: dict[tuple[str, str], str] = {}
    unattributed = Decimal(0)
    unpriced: set[str] = set()
    shared_notes: set[str] = set()
    keyless = [a for a in plan.agents if a.name not in set(owners.values())]
    for row in rows:
        key = row.api_key_id or ""
        if key not in owners and key not in stack_key_ids:
            continue  # another stack's or another team's key
        usd = price_usage(row, catalog)
        if usd is None:
            unpriced.add(str(row.model))
            continue
        day = day_start(row.starting_at).date().isoformat()
        if key in owners:
            spend[(owners[key], day)] += usd
            source[(owners[key], day)] = "own-key"
            continue
        matched = [a.name for a in keyless if _matches(a.model, a.batch, row, catalog)]
        if not matched:
            unattributed += usd
            continue
        for name in matched:
            spend[(name, day)] += usd
            if source.get((name, day)) != "own-key":
                source[(name, day)] = "stack-key" if len(matched) == 1 else "stack-key-shared"
        if len(matched) > 1:
            shared_notes.add(f"{', '.join(matched)} ({row.model}, tier {row.service_tier})")
    warnings = []
    if shared_notes:
        warnings.append(
            "the stack's key is used by several agents with the same model and tier, so each of them is charged all of it "
            f"(their alarms may fire early): {'; '.join(sorted(shared_notes))}; give each agent a key named "
            f"{KEY_NAME_TEMPLATE} in the Console for exact figures")
    if unattributed:
        warnings.append(f"${float(round(unattributed, 6)):,.6f} of the stack's key usage matches no agent's planned model "
                        "and tier; it is not published (a client calling another model?)")
    if unpriced:
        warnings.append(f"usage of models not in the catalog was not priced: {', '.join(sorted(unpriced))}")
    return dict(spend), source, unattributed, warnings


def collect(
    admin: Any, plan: Plan, catalog: Catalog, since: datetime, until: datetime,
    key_template: str = KEY_NAME_TEMPLATE, stack_key_template: str = STACK_KEY_TEMPLATE,
) -> PublishResult:
    """Read the Admin API and work out each agent's spend per day over [since, until]."""
    from agentdeploy.ops.cost_sources import day_ceiling

    stack = plan.stack
    keys = admin.api_keys()
    owners = key_owners(keys, stack, [a.name for a in plan.agents], key_template)
    stack_key = stack_key_template.format(stack=stack)
    stack_key_ids = {k.id for k in keys if k.name == stack_key}
    days = days_between(since, until)
    rows = admin.usage(days[0], day_ceiling(until))
    spend, source, unattributed, warnings = attribute_days(rows, plan, catalog, owners, stack_key_ids)
    if not owners and not stack_key_ids:
        warnings.insert(0, f"no Anthropic API key named {stack_key} (the stack's) or "
                           f"{key_template.format(stack=stack, agent='<agent>')} (an agent's): nothing to attribute; "
                           "name the keys the agents' clients use in the Console")
    result = PublishResult(stack, days[0].isoformat(), until.isoformat(), unattributed_usd=float(round(unattributed, 6)),
                           warnings=warnings)
    for agent in plan.agents:
        for day in days:
            label = day.date().isoformat()
            usd = spend.get((agent.name, label), Decimal(0))
            result.days.append(DaySpend(agent.name, label, float(round(usd, 6)), source.get((agent.name, label), "none"),
                                        stamp(day, until).isoformat()))
    return result


def datums(result: PublishResult) -> list[dict[str, Any]]:
    """One SpendUSDDay datapoint per agent and day (pure)."""
    return [{
        "MetricName": METRIC_SPEND_DAY_USD,
        "Dimensions": [{"Name": DIM_STACK, "Value": result.stack}, {"Name": DIM_AGENT, "Value": d.agent}],
        "Timestamp": datetime.fromisoformat(d.timestamp), "Value": d.usd, "Unit": "None",
    } for d in result.days]


def publish(cloudwatch: Any, result: PublishResult) -> int:
    """Put the day totals; returns how many datapoints were written."""
    batch = datums(result)
    for offset in range(0, len(batch), MAX_DATUMS):
        cloudwatch.call("put_metric_data", Namespace=METRIC_NAMESPACE, MetricData=batch[offset : offset + MAX_DATUMS])
    result.published = len(batch)
    return len(batch)


def check_window(since: datetime, until: datetime, now: datetime) -> None:
    if since > until:
        raise InvalidInput(f"--since {since.isoformat()} is after {until.isoformat()}", hint="pick an earlier --since")
    if now - day_start(since) > MAX_AGE:
        raise InvalidInput(
            f"--since {since.date()} is more than 14 days ago: CloudWatch refuses datapoints that old",
            hint=f"use --since {(now - MAX_AGE + DAY).date()} or later")


def gateway_less(plan: Plan) -> bool:
    """Whether the plan leaves the gateway out, so this command (not the gateway) publishes the
    agents' spend. A plan from before the planner decided on the gateway always had one."""
    return not plan.deploys_gateway


def require_gateway_less(plan: Plan) -> None:
    """A stack with a gateway already publishes SpendUSD; a second publisher would double its alarms' view."""
    if not gateway_less(plan):
        raise InvalidInput(
            f"stack {plan.stack} runs the gateway, which publishes each agent's spend (SpendUSD) itself",
            hint="`deploy spend publish` is for gateway-less stacks (plan.infrastructure.gateway.deploy: false)")


def run_publish(
    stack: str, since: str | None, until: str | None, plan_json: Any = None, admin_url: str | None = None,
    key_template: str = KEY_NAME_TEMPLATE, stack_key_template: str = STACK_KEY_TEMPLATE, dry_run: bool = False,
    region: str | None = None, profile: str | None = None, now: datetime | None = None,
) -> PublishResult:
    """Plan -> Admin API -> CloudWatch, for `deploy spend publish` (and tests, without click).

    The default window starts yesterday: the Admin API's figures for a day keep growing for a
    while after midnight, and re-publishing yesterday's total is harmless (Maximum)."""
    from agentdeploy.ops.anthropic_admin import AdminClient
    from agentdeploy.ops.aws import AwsSession
    from agentdeploy.ops.commands import parse_when, stack_region
    from agentdeploy.ops.stackplan import stack_plan

    clock = now or datetime.now(UTC)
    end = min(parse_when(until, "--until", clock), clock)
    start = parse_when(since, "--since", day_start(clock) - DAY)
    check_window(start, end, clock)
    if "{agent}" not in key_template:
        raise InvalidInput(f"--key-name {key_template!r} must contain {{agent}}", hint="e.g. --key-name '{stack}/{agent}'")
    plan, catalog = stack_plan(stack, plan_json)
    plan = plan.model_copy(update={"stack": stack})
    require_gateway_less(plan)
    with AdminClient(base_url=admin_url, missing_hint=ADMIN_KEY_HINT) as admin:
        result = collect(admin, plan, catalog, start, end, key_template, stack_key_template)
    if not dry_run:
        session = AwsSession(region=stack_region(plan.region, region), profile=profile)
        publish(session.client("cloudwatch"), result)
    return result


def is_gateway_less(stack: str) -> bool:
    """Whether the stack's plan leaves out the gateway (the GitOps job publishes spend only for those)."""
    from agentdeploy.ops.stackplan import stack_plan

    plan, _ = stack_plan(stack)
    return gateway_less(plan)


def published_total(cloudwatch: Any, stack: str, agent: str, since: datetime, until: datetime) -> float | None:
    """What was published for an agent over whole UTC days, summed: each day's Maximum (its
    latest running total), never the Sum of the republished totals. None: nothing published.
    For readers of a gateway-less stack's spend (`deploy status`, `deploy cost`). An `until` at
    midnight ends the window there: the day it starts is not counted.

    One query per day, so each day is exactly one bucket whatever the service's alignment of
    periods to StartTime (moto aligns to the first datapoint instead)."""
    total, seen = 0.0, False
    for day in (d for d in days_between(since, until) if d < until):
        points = cloudwatch.call(
            "get_metric_statistics", Namespace=METRIC_NAMESPACE, MetricName=METRIC_SPEND_DAY_USD,
            Dimensions=[{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}],
            StartTime=day, EndTime=day + DAY, Period=int(DAY.total_seconds()), Statistics=["Maximum"],
        ).get("Datapoints", [])
        if points:
            seen = True
            total += max(float(p["Maximum"]) for p in points)
    return round(total, 6) if seen else None
