"""Candidate options for one agent, each priced at launch and at 12 months.

An option is a (route, model, settings) triple the planner could deploy. Options are built here
and compared in build.py; keeping them as plain values makes the invariants (floor, ceiling,
cost monotone in volume, caching never raises cost) testable one option at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.caching import (
    OPTIONS,
    TTL_SECONDS,
    CacheOption,
    Hits,
    TokenBill,
    arrival_hits,
    batch_hit_rate,
    conversation_bill,
)
from agentdeploy.planner.catalog import Catalog, ClaudeModel, GpuInstance, OpenModel
from agentdeploy.planner.cost import MonthCost, price_bill, price_total
from agentdeploy.planner.fleet import (
    FleetShape,
    Replica,
    fleet_cost,
    fleet_total,
    prefill_rate,
    replica_for,
    shape_fleet,
)
from agentdeploy.planner.latency import Estimate, api_estimate, batch_estimate
from agentdeploy.planner.spec import AgentDecision
from agentdeploy.planner.traffic import traffic_for


@dataclass(frozen=True)
class ApiOption:
    route: Literal["api", "batch"]
    model_id: str
    model: ClaudeModel
    cache: CacheOption
    bill: TokenBill
    estimate: Estimate
    launch: MonthCost
    month_12: MonthCost
    #: The month-by-month cost over the ramp (month 1 = launch, month 12).
    months: tuple[float, ...] = ()
    #: The launch month's token bill (the why-lines report its hit rates).
    launch_bill: TokenBill | None = None

    @property
    def year_usd(self) -> float:
        return sum(self.months)


@dataclass(frozen=True)
class GpuOption:
    open_id: str
    open_model: OpenModel
    instance_type: str
    instance: GpuInstance
    shape_launch: FleetShape
    shape_month_12: FleetShape
    estimate: Estimate
    fallback: ApiOption
    launch: MonthCost
    month_12: MonthCost
    months: tuple[float, ...] = ()

    @property
    def year_usd(self) -> float:
        return sum(self.months)


#: What the planner picks for an agent: a Claude model on the API, or a self-hosted fleet.
Choice = ApiOption | GpuOption


def turn_gap(agent: AgentDecision, catalog: Catalog) -> float:
    return agent.profile.turn_gap_s or catalog.assumptions.default_turn_gap_s


def turn_gap_cv(agent: AgentDecision, catalog: Catalog) -> float:
    cv = agent.profile.turn_gap_cv
    return catalog.assumptions.default_turn_gap_cv if cv is None else cv


def hits_at(agent: AgentDecision, cache: CacheOption, catalog: Catalog, conversations: float, *, batch: bool) -> Hits:
    """The chances a request finds its breakpoints live, at this volume."""
    a = catalog.assumptions
    if batch:
        return Hits(first=batch_hit_rate(conversations / a.days_per_month, agent.profile.turns, a.batch_parallel_writes), own=0.0)
    if cache.ttl is None:
        return Hits(0.0, 0.0)
    traffic = traffic_for(agent, conversations, a.days_per_month)
    return arrival_hits(agent.profile, traffic, TTL_SECONDS[cache.ttl], turn_gap(agent, catalog), turn_gap_cv(agent, catalog))


def api_cost_at(agent: AgentDecision, model: ClaudeModel, cache: CacheOption, catalog: Catalog, conversations: float, *, batch: bool) -> tuple[MonthCost, TokenBill]:
    hits = hits_at(agent, cache, catalog, conversations, batch=batch)
    bill = conversation_bill(agent.profile, model, cache, hits, batch=batch)
    return price_bill(bill, model, cache, batch=batch, conversations=conversations), bill


def api_total_at(agent: AgentDecision, model: ClaudeModel, cache: CacheOption, catalog: Catalog, conversations: float, *, batch: bool) -> float:
    """`api_cost_at(...)[0].total` alone, for the ramp and the break-even scan."""
    hits = hits_at(agent, cache, catalog, conversations, batch=batch)
    bill = conversation_bill(agent.profile, model, cache, hits, batch=batch)
    return price_total(bill, model, cache, batch=batch, conversations=conversations)


def ramp_volumes(agent: AgentDecision, launch: float, m12: float) -> list[float]:
    """Conversations a month for months 1..12 under the decision file's ramp."""
    ramp = agent.volume.ramp
    if ramp == "step":
        return [launch] + [m12] * 11
    if ramp == "geometric":
        return [launch * (m12 / launch) ** (i / 11) for i in range(12)]
    return [launch + (m12 - launch) * i / 11 for i in range(12)]


def cache_choices(agent: AgentDecision, batch: bool) -> list[CacheOption]:
    """The caching options the route allows and the pin keeps; empty for a 5m pin on the Batch API."""
    pref = agent.overrides.cache
    if pref == "off":
        return [OPTIONS[0]]
    # Batches can run longer than 5 minutes: the docs advise the 1-hour TTL for shared prefixes.
    options = [o for o in OPTIONS if not (batch and (o.conversation or o.ttl == "5m"))]
    if pref in ("5m", "1h"):
        options = [o for o in options if o.ttl == pref]
    return options


def best_api_option(
    agent: AgentDecision, model_id: str, model: ClaudeModel, catalog: Catalog, launch_volume: float, m12_volume: float, *, batch: bool,
    months: bool = True,
) -> ApiOption:
    """The caching setting cheapest over both months (launch + month 12) that raises neither month's
    cost above 'off'."""
    off_launch, off_launch_bill = api_cost_at(agent, model, OPTIONS[0], catalog, launch_volume, batch=batch)
    off_m12, off_bill = api_cost_at(agent, model, OPTIONS[0], catalog, m12_volume, batch=batch)
    best: tuple[float, CacheOption, MonthCost, MonthCost, TokenBill, TokenBill] | None = None
    for option in cache_choices(agent, batch):
        if option == OPTIONS[0]:
            (launch, launch_bill), (m12, bill) = (off_launch, off_launch_bill), (off_m12, off_bill)
        else:
            launch, launch_bill = api_cost_at(agent, model, option, catalog, launch_volume, batch=batch)
            m12, bill = api_cost_at(agent, model, option, catalog, m12_volume, batch=batch)
        forced = agent.overrides.cache in ("5m", "1h")
        if not forced and option.enabled and (launch.total > off_launch.total or m12.total > off_m12.total):
            continue
        if not forced and option.enabled and bill.cache_write == 0 and bill.cache_read == 0:
            continue  # below the model's minimum: nothing would be cached
        if best is None or launch.total + m12.total < best[0] - 1e-9:
            best = (launch.total + m12.total, option, launch, m12, bill, launch_bill)
    if best is None:
        # build.py never asks for a route whose caching the pin rules out (see cache_choices)
        raise ValueError(f"no caching option for cache={agent.overrides.cache!r} on the {'batch' if batch else 'api'} route")
    _, option, launch, m12, bill, launch_bill = best
    estimate = batch_estimate() if batch else api_estimate(model, agent.profile)
    found = ApiOption("batch" if batch else "api", model_id, model, option, bill, estimate, launch, m12, (), launch_bill)
    return api_with_months(agent, found, catalog, launch_volume, m12_volume) if months else found


def api_with_months(agent: AgentDecision, option: ApiOption, catalog: Catalog, launch_volume: float, m12_volume: float) -> ApiOption:
    """The option priced month by month over the ramp."""
    if len(option.months) == 12:
        return option
    batch = option.route == "batch"
    months = tuple(
        option.launch.total if i == 0 else option.month_12.total if i == 11
        else api_total_at(agent, option.model, option.cache, catalog, v, batch=batch)
        for i, v in enumerate(ramp_volumes(agent, launch_volume, m12_volume))
    )
    return replace(option, months=months)


def gpu_cost_at(
    agent: AgentDecision,
    instance: GpuInstance,
    open_model: OpenModel,
    fallback: ApiOption,
    catalog: Catalog,
    conversations: float,
    ops_overhead: float,
    idle_minutes: int,
    fallback_usd: float | None = None,
    replica: Replica | None = None,
) -> tuple[MonthCost, FleetShape]:
    """The fleet's month at `conversations`; `fallback_usd` is the Claude fallback's whole bill at
    that volume where the caller has it already (the fallback option's own months)."""
    traffic = traffic_for(agent, conversations, catalog.assumptions.days_per_month)
    perf = instance.perf[open_model.size_class]
    prefill = prefill_rate(perf, instance, open_model, catalog.assumptions)
    shape = shape_fleet(agent, perf, traffic, catalog.assumptions, idle_minutes, prefill, instance.cold_start_s, replica)
    if fallback_usd is None:
        fallback_usd = api_total_at(agent, fallback.model, fallback.cache, catalog, conversations, batch=False)
    items = fleet_cost(agent, instance, shape, catalog.assumptions, fallback_usd, ops_overhead, traffic)
    return items, shape


def build_gpu_option(ctx: AgentContext, open_id: str, instance_type: str, fallback: ApiOption) -> GpuOption:
    """Open model `open_id` on `instance_type`, priced at the agent's launch and 12-month volumes
    (the months between come with `with_months`, once the option meets the ceiling)."""
    open_model, instance = ctx.catalog.open_models[open_id], ctx.catalog.gpu_instances[instance_type]
    (launch, shape_l) = gpu_month(ctx, open_model, instance, fallback, ctx.launch_v, fallback.launch.total)
    (m12, shape_m) = gpu_month(ctx, open_model, instance, fallback, ctx.m12_v, fallback.month_12.total)
    # the worse of the two months' latency is the one the ceiling must hold for
    estimate = max(shape_l.estimate, shape_m.estimate, key=lambda e: e.total_p95_s)
    return GpuOption(open_id, open_model, instance_type, instance, shape_l, shape_m, estimate, fallback, launch, m12)


def with_months(ctx: AgentContext, option: GpuOption) -> GpuOption:
    """The option priced month by month over the ramp (the fallback's months are its Claude bill)."""
    volumes = ramp_volumes(ctx.agent, ctx.launch_v, ctx.m12_v)
    fb = option.fallback.months if len(option.fallback.months) == 12 else (None,) * 12
    months = tuple(
        option.launch.total if i == 0 else option.month_12.total if i == 11
        else gpu_month_total(ctx, option.open_model, option.instance, option.fallback, v, fb[i])
        for i, v in enumerate(volumes)
    )
    return replace(option, months=months)


def _replica(ctx: AgentContext, open_model: OpenModel, instance: GpuInstance) -> Replica:
    """The replica's volume-free figures for this agent, worked out once per (model, instance)."""
    key = (id(open_model), id(instance))
    replica = ctx.replicas.get(key)
    if replica is None:
        perf = instance.perf[open_model.size_class]
        replica = ctx.replicas[key] = replica_for(ctx.agent, perf, ctx.catalog.assumptions, prefill_rate(perf, instance, open_model, ctx.catalog.assumptions))
    return replica


def gpu_month(ctx: AgentContext, open_model: OpenModel, instance: GpuInstance, fallback: ApiOption, volume: float,
            fallback_usd: float | None) -> tuple[MonthCost, FleetShape]:
    """`gpu_cost_at` for this agent, with its replica's volume-free figures worked out once."""
    replica = _replica(ctx, open_model, instance)
    return gpu_cost_at(ctx.agent, instance, open_model, fallback, ctx.catalog, volume, ctx.ops_overhead, ctx.idle_minutes, fallback_usd, replica)


def gpu_month_total(ctx: AgentContext, open_model: OpenModel, instance: GpuInstance, fallback: ApiOption, volume: float,
                    fallback_usd: float | None) -> float:
    """`gpu_month(...)[0].total` alone: no latency estimate, no items (the ramp, the break-even scan)."""
    agent, catalog = ctx.agent, ctx.catalog
    traffic = traffic_for(agent, volume, catalog.assumptions.days_per_month)
    if fallback_usd is None:
        fallback_usd = api_total_at(agent, fallback.model, fallback.cache, catalog, volume, batch=False)
    return fleet_total(agent, instance, _replica(ctx, open_model, instance), traffic, catalog.assumptions, ctx.idle_minutes, fallback_usd,
                       ctx.ops_overhead)


def fleet_month_floor(ctx: AgentContext, instance: GpuInstance) -> float:
    """A bound no month of a fleet on `instance` costs less than: its ops overhead and one replica
    through the active hours at the cheaper rate (the share of a cent lost to rounding the
    month's total to six decimals, and float sums, taken off so the bound stays a bound)."""
    days, hours = ctx.catalog.assumptions.days_per_month, ctx.agent.volume.resolved_active_hours
    month = ctx.ops_overhead + hours * days * min(instance.spot_usd_per_hour, instance.on_demand_usd_per_hour)
    return month * (1 - 1e-9) - 1e-6
