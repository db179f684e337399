"""Candidate options for one agent, each priced at launch and at 12 months.

An option is a (route, model, settings) triple the planner could deploy. Options are built here
and compared in build.py; keeping them as plain values makes the invariants (floor, ceiling,
cost monotone in volume, caching never raises cost) testable one option at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.caching import OPTIONS, CacheOption, TokenBill, conversation_bill
from agentdeploy.planner.catalog import Catalog, ClaudeModel, GpuInstance, OpenModel
from agentdeploy.planner.cost import price_bill
from agentdeploy.planner.fleet import FleetShape, fleet_cost, shape_fleet
from agentdeploy.planner.latency import Estimate, api_estimate, batch_estimate
from agentdeploy.planner.plan import CostItems
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
    launch: CostItems
    month_12: CostItems


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
    launch: CostItems
    month_12: CostItems


#: What the planner picks for an agent: a Claude model on the API, or a self-hosted fleet.
Choice = ApiOption | GpuOption


def turn_gap(agent: AgentDecision, catalog: Catalog) -> float:
    return agent.profile.turn_gap_s or catalog.assumptions.default_turn_gap_s


def api_cost_at(agent: AgentDecision, model: ClaudeModel, cache: CacheOption, catalog: Catalog, conversations: float, *, batch: bool) -> tuple[CostItems, TokenBill]:
    traffic = traffic_for(agent, conversations, catalog.assumptions.days_per_month)
    bill = conversation_bill(
        agent.profile,
        model,
        cache,
        traffic,
        turn_gap_s=turn_gap(agent, catalog),
        batch_hit_rate=catalog.assumptions.batch_cache_hit_rate if batch else None,
    )
    return price_bill(bill, model, cache, batch=batch, conversations=conversations), bill


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
    agent: AgentDecision, model_id: str, model: ClaudeModel, catalog: Catalog, launch_volume: float, m12_volume: float, *, batch: bool
) -> ApiOption:
    """The caching setting with the lowest 12-month cost that raises neither month's cost above 'off'."""
    off_launch, _ = api_cost_at(agent, model, OPTIONS[0], catalog, launch_volume, batch=batch)
    off_m12, _ = api_cost_at(agent, model, OPTIONS[0], catalog, m12_volume, batch=batch)
    best: tuple[float, CacheOption, CostItems, CostItems, TokenBill] | None = None
    for option in cache_choices(agent, batch):
        launch, _ = api_cost_at(agent, model, option, catalog, launch_volume, batch=batch)
        m12, bill = api_cost_at(agent, model, option, catalog, m12_volume, batch=batch)
        forced = agent.overrides.cache in ("5m", "1h")
        if not forced and option.enabled and (launch.total > off_launch.total or m12.total > off_m12.total):
            continue
        if not forced and option.enabled and bill.cache_write == 0 and bill.cache_read == 0:
            continue  # below the model's minimum: nothing would be cached
        if best is None or m12.total < best[0] - 1e-9:
            best = (m12.total, option, launch, m12, bill)
    if best is None:
        # build.py never asks for a route whose caching the pin rules out (see cache_choices)
        raise ValueError(f"no caching option for cache={agent.overrides.cache!r} on the {'batch' if batch else 'api'} route")
    _, option, launch, m12, bill = best
    estimate = batch_estimate() if batch else api_estimate(model, agent.profile)
    return ApiOption("batch" if batch else "api", model_id, model, option, bill, estimate, launch, m12)


def gpu_cost_at(
    agent: AgentDecision,
    instance: GpuInstance,
    open_model: OpenModel,
    fallback: ApiOption,
    catalog: Catalog,
    conversations: float,
    ops_overhead: float,
    idle_minutes: int,
) -> tuple[CostItems, FleetShape]:
    traffic = traffic_for(agent, conversations, catalog.assumptions.days_per_month)
    perf = instance.perf[open_model.size_class]
    shape = shape_fleet(agent, perf, traffic, catalog.assumptions, idle_minutes)
    fallback_api, _ = api_cost_at(agent, fallback.model, fallback.cache, catalog, conversations, batch=False)
    items = fleet_cost(
        agent, instance, shape, catalog.assumptions, fallback_api.total, ops_overhead, traffic.active_hours_per_day
    )
    return items, shape


def build_gpu_option(ctx: AgentContext, open_id: str, instance_type: str, fallback: ApiOption) -> GpuOption:
    """Open model `open_id` on `instance_type`, priced at the agent's launch and 12-month volumes."""
    open_model, instance = ctx.catalog.open_models[open_id], ctx.catalog.gpu_instances[instance_type]

    def at(volume: float) -> tuple[CostItems, FleetShape]:
        return gpu_cost_at(ctx.agent, instance, open_model, fallback, ctx.catalog, volume, ctx.ops_overhead, ctx.idle_minutes)

    (launch, shape_l), (m12, shape_m) = at(ctx.launch_v), at(ctx.m12_v)
    # the worse of the two months' latency is the one the ceiling must hold for
    estimate = max(shape_l.estimate, shape_m.estimate, key=lambda e: e.total_p95_s)
    return GpuOption(open_id, open_model, instance_type, instance, shape_l, shape_m, estimate, fallback, launch, m12)
