"""Where `deploy cost` and `deploy status` read actual spend: the Admin API, the spend metric, EC2.

Thin edges over the pure functions in cost.py; each returns plain figures plus warnings. The
per-agent Claude spend metric depends on the kind of stack the plan made: the gateway's
increments (`SpendUSD`, summed) where it runs, else the day totals `deploy spend publish`
writes (`SpendUSDDay`, each day's Maximum) — the same metric the stack's spend alarms read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agentdeploy.errors import MissingDependency
from agentdeploy.naming import METRIC_SPEND_DAY_USD, METRIC_SPEND_USD, ROLE_GPU_FLEET, TAG_ROLE, TAG_STACK, tag_filters
from agentdeploy.ops.anthropic_admin import AdminClient
from agentdeploy.ops.aws import AwsClient
from agentdeploy.ops.cost import (
    KEY_NAME_TEMPLATE,
    STACK_KEY_TEMPLATE,
    GpuSpend,
    InstanceUsage,
    attribute_usage,
    attribution_gap_warning,
    billed_gap_warning,
    gpu_spend,
    instance_hours,
    key_owners,
)
from agentdeploy.ops.metrics import metric_sum
from agentdeploy.ops.spend_publish import day_start, gateway_less, published_total
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import Plan


def day_ceiling(value: datetime) -> datetime:
    """The reports' daily buckets end at midnight UTC: ask up to the next one so today counts."""
    day = value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == value else day + timedelta(days=1)


@dataclass
class ClaudeActuals:
    by_agent: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: the part of by_agent's spend at service_tier batch
    batch_by_agent: dict[str, float] = field(default_factory=dict)
    billed_usd: float | None = None
    org_priced_usd: float | None = None
    warnings: list[str] = field(default_factory=list)
    #: catalog-priced usage of the stack's own key, and its name (None: no key of that name)
    stack_key_usd: float | None = None
    stack_key_name: str = ""


def claude_from_admin(
    client: AdminClient,
    plan: Plan,
    catalog: Catalog,
    stack: str,
    since: datetime,
    until: datetime,
    key_template: str = KEY_NAME_TEMPLATE,
    workspace_id: str | None = None,
    stack_key_template: str = STACK_KEY_TEMPLATE,
) -> ClaudeActuals:
    """Per-agent Claude spend of agents with a key of their own, the usage of the stack's shared
    key (to check the gateway's attribution against), and the billed total."""
    agents = [a.name for a in plan.agents]
    keys = client.api_keys()
    owners = key_owners(keys, stack, agents, key_template)
    stack_key = stack_key_template.format(stack=stack)
    stack_key_ids = {k.id for k in keys if k.name == stack_key}
    end = day_ceiling(until)
    usage = client.usage(since, end)
    if workspace_id is not None:
        usage = [r for r in usage if r.workspace_id == workspace_id]
    spend = attribute_usage(usage, owners, catalog)
    billed_rows = client.cost(since, end, group_by=("workspace_id",))
    if workspace_id is not None:
        billed_rows = [r for r in billed_rows if r.workspace_id == workspace_id]
    billed = sum((r.amount_usd for r in billed_rows), Decimal(0))
    out = ClaudeActuals(billed_usd=float(round(billed, 6)), org_priced_usd=float(round(spend.org_priced, 6)),
                        stack_key_name=stack_key)
    if stack_key_ids:
        out.stack_key_usd = float(round(sum((spend.by_key.get(k, Decimal(0)) for k in stack_key_ids), Decimal(0)), 6))
    keyed = set(owners.values())
    for name in agents:
        if name in keyed:
            out.by_agent[name] = (float(spend.by_agent.get(name, Decimal(0))), "admin-api")
            out.batch_by_agent[name] = float(spend.batch_by_agent.get(name, Decimal(0)))
    missing = [a for a in agents if a not in keyed]
    if missing and not stack_key_ids:
        out.warnings.append(
            f"no Anthropic API key named {stack_key} (the stack's key) or per agent "
            f"({', '.join(key_template.format(stack=stack, agent=a) for a in missing)}): {metered_spend(plan).what} "
            "is not checked against the provider's usage; name the stack's key in the Console, or pass --stack-key-name"
        )
    if spend.unpriced_models:
        out.warnings.append(f"usage of models not in the catalog was not priced: {', '.join(sorted(spend.unpriced_models))}")
    gap = billed_gap_warning(billed, spend.org_priced)
    if gap:
        out.warnings.append(gap)
    return out


@dataclass(frozen=True)
class MeteredSpend:
    """Where a stack's per-agent Claude spend is metered in CloudWatch, and how to speak of it."""

    metric: str
    #: the cost report's `claude_source` for spend read from it
    source: str
    #: the metric in a sentence
    what: str
    #: an agent's status note when it has no series yet
    missing: str


GATEWAY_METERED = MeteredSpend(METRIC_SPEND_USD, "gateway-metric", "the gateway's per-agent metric (SpendUSD)",
                               "no spend metric from the gateway yet")
PUBLISHED_METERED = MeteredSpend(METRIC_SPEND_DAY_USD, "published-metric",
                                 "the per-agent day totals `deploy spend publish` writes (SpendUSDDay)",
                                 "no spend published yet (SpendUSDDay; is `deploy spend publish` scheduled?)")


def metered_spend(plan: Plan) -> MeteredSpend:
    """The gateway's metric where the plan runs the gateway, else the published day totals."""
    return PUBLISHED_METERED if gateway_less(plan) else GATEWAY_METERED


def claude_from_metric(
    cw: AwsClient, plan: Plan, agents: list[str], stack: str, since: datetime, until: datetime
) -> dict[str, tuple[float, str]]:
    """Per-agent Claude spend from the stack's spend metric; agents with nothing there are absent.

    The gateway's increments are summed over the window; published day totals count whole UTC
    days (each day's Maximum), the days holding `since` and `until` included."""
    metered = metered_spend(plan)
    out: dict[str, tuple[float, str]] = {}
    for name in agents:
        if metered is PUBLISHED_METERED:
            total = published_total(cw, stack, name, since, until)
            if total is not None:
                out[name] = (total, metered.source)
            continue
        reading = metric_sum(cw, metered.metric, stack, name, since, until)
        if reading.series:
            out[name] = (reading.value or 0.0, metered.source)
    return out


def whole_day_warning(since: datetime, until: datetime, now: datetime) -> str | None:
    """Published day totals cannot be cut inside a day: say so when the window does (a window
    ending now is fine: today's total is the spend so far)."""
    cut = [f"--since {since.isoformat()}"] if since != day_start(since) else []
    if until != day_start(until) and day_start(until) < day_start(now):
        cut.append(f"--until {until.isoformat()}")
    if not cut:
        return None
    return (f"{' and '.join(cut)} cut{'s' if len(cut) == 1 else ''} a UTC day, but the published spend is per whole day: "
            "those days count whole; pass dates for an exact window")


def gpu_from_ec2(
    ec2: AwsClient,
    catalog: Catalog,
    stack: str,
    since: datetime,
    until: datetime,
    autoscaling: AwsClient | None = None,
    fleet_types: dict[str, str] | None = None,
) -> tuple[dict[str, GpuSpend], list[str]]:
    """GPU spend from the instances EC2 lists, plus (given `autoscaling`) those it no longer
    lists, from the stack's fleets' scaling activity history (priced at `fleet_types`, agent ->
    the plan's instance type, on-demand)."""
    reservations = ec2.paginate(
        "describe_instances",
        "Reservations",
        Filters=tag_filters(stack, ROLE_GPU_FLEET),
    )
    instances = [i for r in reservations for i in r.get("Instances", [])]
    usages, warnings = instance_hours(instances, since, until)
    if autoscaling is not None:
        gone, gone_warnings = _gone_from_history(autoscaling, stack, {i["InstanceId"] for i in instances},
                                                 fleet_types or {}, since, until)
        usages += gone
        warnings += gone_warnings
    by_agent, price_warnings = gpu_spend(usages, catalog)
    return by_agent, warnings + price_warnings


def _gone_from_history(
    autoscaling: AwsClient, stack: str, listed: set[str], fleet_types: dict[str, str], since: datetime, until: datetime
) -> tuple[list[InstanceUsage], list[str]]:
    from agentdeploy.ops.fleets import list_fleets
    from agentdeploy.ops.gpu_history import gone_instance_usage

    usages: list[InstanceUsage] = []
    warnings: list[str] = []
    for fleet in list_fleets(autoscaling, stack):
        itype = fleet_types.get(fleet.agent or "") or next((i.instance_type for i in fleet.instances), "")
        activities = autoscaling.paginate("describe_scaling_activities", "Activities", AutoScalingGroupName=fleet.name)
        found, notes = gone_instance_usage(activities, listed, fleet.agent, itype, since, until)
        usages += found
        warnings += [f"{fleet.name}: {n}" for n in notes]
        hours = sum(u.hours for u in found)
        if hours > 0:
            warnings.append(f"{fleet.name}: {hours:.2f} h of instances EC2 no longer lists (from the scaling activity "
                            f"history) priced as {itype} on-demand; --gpu-source cost-explorer is exact")
    return usages, warnings


def fleet_types(plan: Plan) -> dict[str, str]:
    """agent -> the plan's instance type for its fleet."""
    return {a.name: a.fleet.instance_type for a in plan.agents if a.fleet is not None}


def collect_report(
    plan: Plan,
    catalog: Catalog,
    stack: str,
    since: datetime,
    until: datetime,
    ec2: AwsClient,
    cloudwatch: AwsClient,
    admin: AdminClient | None,
    threshold: float,
    horizon: str = "launch",
    key_template: str = KEY_NAME_TEMPLATE,
    workspace_id: str | None = None,
    cost_explorer: AwsClient | None = None,
    stack_key_template: str = STACK_KEY_TEMPLATE,
    autoscaling: AwsClient | None = None,
):
    """Read every source and build the report (admin=None: Claude spend from the spend metric only;
    cost_explorer given: GPU spend from Cost Explorer instead of EC2 instance hours).

    A stack without GPU agents never asks EC2; read with the Admin API it needs no AWS at all: when
    CloudWatch cannot be read for want of credentials, the stack key's total is reported without
    the per-agent split, and the report says so.
    """
    from agentdeploy.ops.cost import build_report

    agents = [a.name for a in plan.agents]
    has_gpu = any(a.route == "gpu" or a.fleet is not None for a in plan.agents)
    warnings: list[str] = []
    claude: dict[str, tuple[float, str]] = {}
    billed = priced = None
    batch: dict[str, float] = {}
    actuals: ClaudeActuals | None = None
    if admin is not None:
        actuals = claude_from_admin(admin, plan, catalog, stack, since, until, key_template, workspace_id, stack_key_template)
        claude.update(actuals.by_agent)
        batch.update(actuals.batch_by_agent)
        billed, priced = actuals.billed_usd, actuals.org_priced_usd
        warnings += actuals.warnings
    rest = [a for a in agents if a not in claude]
    kind = metered_spend(plan)
    metered: dict[str, tuple[float, str]] = {}
    metered_read = bool(rest)
    if rest:
        try:
            metered = claude_from_metric(cloudwatch, plan, rest, stack, since, until)
        except MissingDependency as err:
            if has_gpu or actuals is None:
                raise
            metered_read = False
            warnings.append(f"{kind.what} was not read ({err.message}): Claude spend is not split "
                            "per agent; the stack key's total is above")
        claude.update(metered)
        cut = whole_day_warning(since, until, datetime.now(UTC)) if metered and kind is PUBLISHED_METERED else None
        if cut:
            warnings.append(cut)
    if actuals is not None and actuals.stack_key_usd is not None and metered_read:
        gap = attribution_gap_warning(actuals.stack_key_usd, sum(usd for usd, _ in metered.values()), actuals.stack_key_name,
                                      gateway=kind is GATEWAY_METERED)
        if gap:
            warnings.append(gap)
    unknown = [a.name for a in plan.agents if a.name not in claude and a.route != "gpu"]
    if unknown and metered_read:
        warnings.append(f"no Claude spend found for {', '.join(unknown)} (no API key of its own and nothing in {kind.metric})")
    gpu: dict[str, GpuSpend] = {}
    if cost_explorer is not None:
        gpu, gpu_warnings = gpu_from_cost_explorer(cost_explorer, stack, since, until)
        warnings += gpu_warnings
    elif has_gpu:
        gpu, gpu_warnings = gpu_from_ec2(ec2, catalog, stack, since, until, autoscaling, fleet_types(plan))
        warnings += gpu_warnings
    report = build_report(
        plan, catalog, stack, since, until, claude, gpu, threshold=threshold, horizon=horizon,  # type: ignore[arg-type]
        warnings=warnings, claude_billed_usd=billed, claude_org_priced_usd=priced, claude_batch=batch,
    )
    report.claude_stack_key_usd = None if actuals is None else actuals.stack_key_usd
    return report


def gpu_from_cost_explorer(ce: AwsClient, stack: str, since: datetime, until: datetime) -> tuple[dict[str, GpuSpend], list[str]]:
    """GPU-fleet spend per agent from Cost Explorer, grouped by the agent tag.

    Exact (terminated instances, EBS and data transfer of tagged resources included) where the
    agentdeploy tags are activated as cost allocation tags; AWS charges $0.01 per request and
    its data lags by up to a day. Instance hours are not split out here.
    """
    from agentdeploy.naming import TAG_AGENT

    start = since.astimezone(UTC).date()
    end = day_ceiling(until).date()
    params = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "MONTHLY",
        "Metrics": ["UnblendedCost"],
        "Filter": {
            "And": [
                {"Tags": {"Key": TAG_STACK, "Values": [stack], "MatchOptions": ["EQUALS"]}},
                {"Tags": {"Key": TAG_ROLE, "Values": [ROLE_GPU_FLEET], "MatchOptions": ["EQUALS"]}},
            ]
        },
        "GroupBy": [{"Type": "TAG", "Key": TAG_AGENT}],
    }
    by_agent: dict[str, GpuSpend] = {}
    warnings: list[str] = []
    token: str | None = None
    for _ in range(100):
        page = ce.call("get_cost_and_usage", **params, **({"NextPageToken": token} if token else {}))
        for period in page.get("ResultsByTime", []):
            for group in period.get("Groups", []):
                key = group["Keys"][0]
                agent = key.split("$", 1)[1] if "$" in key else key
                cost = group.get("Metrics", {}).get("UnblendedCost", {})
                if cost.get("Unit", "USD") != "USD":
                    warnings.append(f"Cost Explorer reported {cost.get('Unit')} for {agent}; not counted")
                    continue
                spend = by_agent.setdefault(agent or "(untagged)", GpuSpend())
                spend.usd += float(Decimal(cost.get("Amount", "0")))
        token = page.get("NextPageToken")
        if not token:
            break
    if not by_agent:
        warnings.append(
            "Cost Explorer returned no GPU-fleet cost for this stack; activate the agentdeploy tags as cost "
            "allocation tags (Billing console), or use --gpu-source ec2"
        )
    return by_agent, warnings
