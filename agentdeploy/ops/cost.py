"""Actual spend per agent against the plan's projection and budget (`deploy cost`).

How an agent's Claude spend is identified. The stack provisions ONE Anthropic key, shared by every
agent behind the gateway, so the provider cannot split it per agent; the gateway can: it prices
each response with the catalog and publishes it per agent (metric `SpendUSD`, dimensions Stack
and Agent). That metric is the per-agent attribution. The Admin API is the check: the usage of
the stack's key (named `<stack>` in the Console; the template is configurable), priced with the
catalog, must match the sum the gateway attributed; a gap over 1% is reported, because it means
traffic reached Claude with the stack's key around the gateway, or the gateway's metric is lost.
Workspaces would split spend too, but one key belongs to one workspace, so they would need a key
per agent, which the stack does not provision. Where an operator did create a key per agent
(named `<stack>/<agent>`), its usage is exact and is used for that agent instead. A gateway-less
stack's per-agent metric is the day totals `deploy spend publish` writes (`SpendUSDDay`).

The cost report (cents, per workspace) is the billed total: it is shown beside the attributed
sum, and a gap between the catalog-priced usage of the whole organisation and the billed total
is reported, because it means the catalog's prices are stale.

Batch spend: the usage rows at service_tier `batch` (priced at the catalog's batch discount) are
summed per agent beside the total, so a batch-route agent's spend is read against its projection
(which the planner made at batch prices). A batch-route agent with spend at the standard tier is
flagged `realtime-spend`: its requests reached Claude at full price, around the gateway's batch
room. Where the spend comes from the gateway's metric, a batch agent's is all batch (the gateway
refuses its realtime requests).

GPU spend is instance hours x the catalog's hourly price (spot or on-demand, from the instance's
lifecycle), for instances tagged with the stack's GPU-fleet tags. Instances terminated long ago
have left EC2's listing (about an hour), so over long periods this undercounts; Cost Explorer
grouped by the stack tag is the exact source where it is enabled.

Everything below `collect_*` is pure and unit-tested with hand-computed figures.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from agentdeploy.planner.catalog import Catalog, ClaudeModel
from agentdeploy.planner.plan import Plan

KEY_NAME_TEMPLATE = "{stack}/{agent}"
#: How the one key the stack provisions is named in the Anthropic Console.
STACK_KEY_TEMPLATE = "{stack}"
DEFAULT_DRIFT = 0.25
Horizon = Literal["launch", "month_12"]
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")
_RUNNING_STATES = {"pending", "running", "stopping", "shutting-down"}
#: Web search: $10 per 1,000 searches, on top of tokens (catalog-facts 1.2).
WEB_SEARCH_USD = Decimal("0.01")


# -- Claude ------------------------------------------------------------------------------------


def resolve_model(model: str | None, catalog: Catalog) -> ClaudeModel | None:
    """The catalog entry for a reported model id ('claude-haiku-4-5-20251001' -> 'claude-haiku-4-5')."""
    if not model:
        return None
    return catalog.claude_models.get(model) or catalog.claude_models.get(_DATE_SUFFIX.sub("", model))


def price_usage(row: Any, catalog: Catalog) -> Decimal | None:
    """USD for one usage row (UsageRow-like), or None when its model is not in the catalog."""
    model = resolve_model(row.model, catalog)
    if model is None:
        return None
    per_mtok_in = Decimal(str(model.input_usd_per_mtok))
    per_mtok_out = Decimal(str(model.output_usd_per_mtok))
    usd = (
        row.uncached_input_tokens * per_mtok_in
        + row.cache_read_input_tokens * per_mtok_in * Decimal(str(model.cache_read_multiplier))
        + row.cache_write_5m_tokens * per_mtok_in * Decimal(str(model.cache_write_5m_multiplier))
        + row.cache_write_1h_tokens * per_mtok_in * Decimal(str(model.cache_write_1h_multiplier))
        + row.output_tokens * per_mtok_out
    ) / Decimal(1_000_000)
    if row.service_tier == "batch":
        usd *= 1 - Decimal(str(model.batch_discount))
    return usd + getattr(row, "web_search_requests", 0) * WEB_SEARCH_USD


def key_owners(keys: Iterable[Any], stack: str, agents: Iterable[str], template: str = KEY_NAME_TEMPLATE) -> dict[str, str]:
    """API key id -> agent, for keys named after an agent of this stack (archived keys included:
    their past usage still counts)."""
    wanted = {template.format(stack=stack, agent=a): a for a in agents}
    return {k.id: wanted[k.name] for k in keys if k.name in wanted}


@dataclass
class ClaudeSpend:
    by_agent: dict[str, Decimal]
    #: catalog-priced usage of every key in the organisation (for the billed-total check)
    org_priced: Decimal
    unpriced_models: set[str] = field(default_factory=set)
    #: the part of `by_agent` spent at service_tier batch
    batch_by_agent: dict[str, Decimal] = field(default_factory=dict)
    #: catalog-priced usage per API key id
    by_key: dict[str, Decimal] = field(default_factory=dict)


def attribute_usage(rows: Iterable[Any], owners: dict[str, str], catalog: Catalog) -> ClaudeSpend:
    by_agent: dict[str, Decimal] = defaultdict(Decimal)
    batch: dict[str, Decimal] = defaultdict(Decimal)
    by_key: dict[str, Decimal] = defaultdict(Decimal)
    org = Decimal(0)
    unpriced: set[str] = set()
    for row in rows:
        usd = price_usage(row, catalog)
        if usd is None:
            unpriced.add(str(row.model))
            continue
        org += usd
        if row.api_key_id:
            by_key[row.api_key_id] += usd
        agent = owners.get(row.api_key_id or "")
        if agent is not None:
            by_agent[agent] += usd
            if row.service_tier == "batch":
                batch[agent] += usd
    return ClaudeSpend(dict(by_agent), org, unpriced, dict(batch), dict(by_key))


# -- GPU -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceUsage:
    instance_id: str
    agent: str | None
    instance_type: str
    spot: bool
    hours: float
    ended: bool


def _ended_at(instance: dict[str, Any]) -> datetime | None:
    match = _TRANSITION_TIME.search(instance.get("StateTransitionReason", "") or "")
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def instance_hours(instances: Iterable[dict[str, Any]], since: datetime, until: datetime) -> tuple[list[InstanceUsage], list[str]]:
    """Hours each instance ran inside [since, until], from its EC2 description."""
    out: list[InstanceUsage] = []
    warnings: list[str] = []
    for inst in instances:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        state = inst.get("State", {}).get("Name", "")
        start = inst["LaunchTime"]
        end: datetime | None
        if state in _RUNNING_STATES:
            end = until
        else:
            end = _ended_at(inst)
            if end is None:
                warnings.append(f"{inst['InstanceId']}: {state} with no stop time recorded; not counted")
                continue
        lo, hi = max(start, since), min(end, until)
        hours = max(0.0, (hi - lo).total_seconds() / 3600)
        out.append(
            InstanceUsage(
                instance_id=inst["InstanceId"],
                agent=tags.get("agentdeploy:agent"),
                instance_type=inst.get("InstanceType", ""),
                spot=inst.get("InstanceLifecycle") == "spot",
                hours=hours,
                ended=state not in _RUNNING_STATES,
            )
        )
    return out, warnings


@dataclass
class GpuSpend:
    usd: float = 0.0
    spot_hours: float = 0.0
    on_demand_hours: float = 0.0


def gpu_spend(usages: Iterable[InstanceUsage], catalog: Catalog) -> tuple[dict[str, GpuSpend], list[str]]:
    by_agent: dict[str, GpuSpend] = defaultdict(GpuSpend)
    warnings: list[str] = []
    for u in usages:
        entry = catalog.gpu_instances.get(u.instance_type)
        agent = u.agent or "(untagged)"
        spend = by_agent[agent]
        if u.spot:
            spend.spot_hours += u.hours
        else:
            spend.on_demand_hours += u.hours
        if entry is None:
            warnings.append(f"{u.instance_id}: instance type {u.instance_type} is not in the catalog; its hours are not priced")
            continue
        spend.usd += u.hours * (entry.spot_usd_per_hour if u.spot else entry.on_demand_usd_per_hour)
    return dict(by_agent), warnings


# -- the report ----------------------------------------------------------------------------------


@dataclass
class AgentCost:
    agent: str
    route: str
    model: str
    claude_usd: float
    claude_source: str
    #: the part of claude_usd spent through the Message Batches API (at batch prices)
    claude_batch_usd: float
    gpu_usd: float
    gpu_spot_hours: float
    gpu_on_demand_hours: float
    actual_usd: float
    projected_usd: float
    projected_monthly_usd: float
    budget_monthly_usd: float
    budget_used_pct: float
    drift_pct: float | None
    flags: list[str]


@dataclass
class CostReport:
    stack: str
    since: str
    until: str
    period_days: float
    horizon: str
    drift_threshold_pct: float
    agents: list[AgentCost]
    actual_usd: float
    projected_usd: float
    budget_monthly_usd: float
    #: Billed Claude total from the cost report (organisation or the chosen workspace), if read.
    claude_billed_usd: float | None = None
    #: Claude usage of every key, priced with the catalog (to compare with the billed total).
    claude_org_priced_usd: float | None = None
    warnings: list[str] = field(default_factory=list)
    #: the agents' spend through the Message Batches API, summed
    claude_batch_usd: float = 0.0
    #: usage of the stack's own Anthropic key (Admin API, catalog-priced): the check on the
    #: gateway's per-agent attribution; None when the key was not found or not read
    claude_stack_key_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flags_for(actual: float, projected: float, budget_monthly: float, period_share: float, threshold: float) -> tuple[float | None, list[str]]:
    flags: list[str] = []
    drift: float | None = None
    if projected > 0:
        drift = actual / projected - 1
        if drift > threshold:
            flags.append("over-projection")
        elif drift < -threshold:
            flags.append("under-projection")
    elif actual > 0:
        flags.append("over-projection")
    if budget_monthly > 0 and actual > budget_monthly:
        flags.append("over-budget")
    elif budget_monthly > 0 and actual > budget_monthly * period_share:
        flags.append("over-budget-pace")
    return drift, flags


def build_report(
    plan: Plan,
    catalog: Catalog,
    stack: str,
    since: datetime,
    until: datetime,
    claude: dict[str, tuple[float, str]],
    gpu: dict[str, GpuSpend],
    threshold: float = DEFAULT_DRIFT,
    horizon: Horizon = "launch",
    warnings: list[str] | None = None,
    claude_billed_usd: float | None = None,
    claude_org_priced_usd: float | None = None,
    claude_batch: dict[str, float] | None = None,
) -> CostReport:
    """Per-agent actual vs projection for [since, until]; `claude` maps agent -> (usd, source),
    `claude_batch` agent -> the part of it at batch prices (from the Admin API's service tier)."""
    period_days = (until - since).total_seconds() / 86400
    share = period_days / catalog.assumptions.days_per_month
    agents: list[AgentCost] = []
    for a in plan.agents:
        claude_usd, source = claude.get(a.name, (0.0, "none"))
        g = gpu.get(a.name, GpuSpend())
        actual = claude_usd + g.usd
        monthly = getattr(a.cost.monthly_usd, horizon)
        projected = monthly * share
        drift, flags = flags_for(actual, projected, a.budget.monthly_usd, share, threshold)
        batch_usd = batch_share(a.route, claude_usd, source, (claude_batch or {}).get(a.name, 0.0))
        if a.route == "batch" and round(claude_usd - batch_usd, 6) > 0:
            flags.append("realtime-spend")
        agents.append(
            AgentCost(
                agent=a.name,
                route=a.route,
                model=a.model,
                claude_usd=round(claude_usd, 6),
                claude_source=source,
                claude_batch_usd=round(batch_usd, 6),
                gpu_usd=round(g.usd, 6),
                gpu_spot_hours=round(g.spot_hours, 4),
                gpu_on_demand_hours=round(g.on_demand_hours, 4),
                actual_usd=round(actual, 6),
                projected_usd=round(projected, 6),
                projected_monthly_usd=monthly,
                budget_monthly_usd=a.budget.monthly_usd,
                budget_used_pct=round(100 * actual / a.budget.monthly_usd, 2) if a.budget.monthly_usd else 0.0,
                drift_pct=None if drift is None else round(100 * drift, 2),
                flags=flags,
            )
        )
    extra = list(warnings or [])
    stray = sorted(set(gpu) - {a.name for a in plan.agents})
    if stray:
        extra.append(f"GPU instances tagged for agents not in the plan: {', '.join(stray)}")
    return CostReport(
        stack=stack,
        since=since.isoformat(),
        until=until.isoformat(),
        period_days=round(period_days, 4),
        horizon=horizon,
        drift_threshold_pct=round(100 * threshold, 2),
        agents=agents,
        actual_usd=round(sum(x.actual_usd for x in agents), 6),
        projected_usd=round(sum(x.projected_usd for x in agents), 6),
        budget_monthly_usd=round(sum(x.budget_monthly_usd for x in agents), 2),
        claude_billed_usd=claude_billed_usd,
        claude_org_priced_usd=claude_org_priced_usd,
        warnings=extra,
        claude_batch_usd=round(sum(x.claude_batch_usd for x in agents), 6),
    )


def batch_share(route: str, claude_usd: float, source: str, admin_batch_usd: float) -> float:
    """The part of an agent's Claude spend made at batch prices: the Admin API says it per
    service tier; the gateway's metric does not, but for a batch-route agent it holds batch
    spend only (the gateway refuses that agent's realtime requests). The published day totals
    do not either; a batch agent's share of the stack's key is its batch-tier usage only, so it
    is taken as batch too (an agent's own key may also hold realtime usage: the Admin API,
    read directly, tells it apart)."""
    if source in ("gateway-metric", "published-metric"):
        return claude_usd if route == "batch" else 0.0
    return admin_batch_usd


def attribution_gap_warning(
    key_usd: float, attributed_usd: float, key_name: str, tolerance: float = 0.01, gateway: bool = True
) -> str | None:
    """A warning when the stack key's usage and what the spend metric attributed per agent
    disagree by more than 1% (and a cent). With a gateway: spend around it with the stack's key,
    or lost metrics. Without (`deploy spend publish`'s day totals): usage no agent's planned model
    and tier matches, a publish not run since, or one row charged to several agents."""
    gap = key_usd - attributed_usd
    base = max(abs(key_usd), abs(attributed_usd))
    if base == 0 or abs(gap) <= 0.01 or abs(gap) / base <= tolerance:
        return None
    more = "more" if gap > 0 else "less"
    if gateway:
        who = "the gateway attributed to agents"
        why = ("something calls Claude with the stack's key around the gateway" if gap > 0
               else "the gateway's metric counts spend the key did not make (another key configured?)")
    else:
        who = "`deploy spend publish` published for agents"
        why = ("a model or tier no agent is planned on used the key, or the latest usage is not published yet "
               "(is `deploy spend publish` scheduled?)" if gap > 0
               else "agents sharing a model and tier were each charged all of it (see `deploy spend publish`)")
    return (f"the Anthropic key {key_name} spent ${key_usd:.2f} (Admin API, catalog-priced), ${abs(gap):.2f} {more} than the "
            f"${attributed_usd:.2f} {who}; {why}")


def billed_gap_warning(billed: Decimal, priced: Decimal, tolerance: float = 0.01) -> str | None:
    """A warning when catalog-priced usage and the billed total disagree by more than 1%."""
    if billed == 0 and priced == 0:
        return None
    base = max(abs(billed), abs(priced))
    if abs(billed - priced) / base > Decimal(str(tolerance)):
        return (
            f"Claude usage priced with the catalog (${float(priced):.2f}) differs from the billed cost report "
            f"(${float(billed):.2f}); the catalog's prices may be stale (`deploy catalog show`)"
        )
    return None
