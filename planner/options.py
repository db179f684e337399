"""Candidate options for one agent, each priced at launch and at 12 months.

An option is a (route, model, settings) triple the planner could deploy. Options are built here
and compared in build.py; keeping them as plain values makes the invariants (floor, ceiling,
cost monotone in volume, caching never raises cost) testable one option at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
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
)
from agentdeploy.planner.catalog import Catalog, ClaudeModel, GpuInstance, OpenModel
from agentdeploy.planner.cost import MonthCost
from agentdeploy.planner.fleet import FleetShape
from agentdeploy.planner.latency import Estimate, api_estimate, batch_estimate
from agentdeploy.planner.pricers import AgentPricers, ApiPricer, FleetPricer
from agentdeploy.planner.spec import AgentDecision
from agentdeploy.planner.traffic import traffic_for


@dataclass(frozen=True)
class ApiOption:
    """A Claude model on the realtime or Batch API with one caching setting. Its months' totals
    are worked out for every candidate; the itemised months and token bills only where read."""

    route: Literal["api", "batch"]
    model_id: str
    model: ClaudeModel
    cache: CacheOption
    estimate: Estimate
    pricer: ApiPricer = field(compare=False, repr=False)
    #: Conversations a month at launch and at 12 months, and the option's total cost at each.
    volumes: tuple[float, float] = (0.0, 0.0)
    totals: tuple[float, float] = (0.0, 0.0)
    #: The month-by-month cost over the ramp (month 1 = launch, month 12).
    months: tuple[float, ...] = ()

    @property
    def year_usd(self) -> float:
        return sum(self.months)

    @cached_property
    def _launch(self) -> tuple[MonthCost, TokenBill]:
        return self.pricer.month(self.volumes[0])

    @cached_property
    def _month_12(self) -> tuple[MonthCost, TokenBill]:
        return self.pricer.month(self.volumes[1])

    @property
    def launch(self) -> MonthCost:
        return self._launch[0]

    @property
    def month_12(self) -> MonthCost:
        return self._month_12[0]

    @property
    def bill(self) -> TokenBill:
        """The 12-month volume's token bill of one conversation."""
        return self._month_12[1]

    @property
    def launch_bill(self) -> TokenBill:
        """The launch month's token bill (the why-lines report its hit rates)."""
        return self._launch[1]


@dataclass(frozen=True)
class GpuOption:
    """A fleet of `open_id` on `instance_type`. Its months' totals and latency are worked out for
    every candidate; the itemised months and the fleet's shape only for the one a plan shows."""

    open_id: str
    open_model: OpenModel
    instance_type: str
    instance: GpuInstance
    #: The worse of the launch and 12-month p95s: the one the ceiling must hold for.
    estimate: Estimate
    fallback: ApiOption
    fleet: FleetPricer = field(compare=False, repr=False)
    #: Conversations a month at launch and at 12 months, and the fleet's total cost at each.
    volumes: tuple[float, float] = (0.0, 0.0)
    totals: tuple[float, float] = (0.0, 0.0)
    months: tuple[float, ...] = ()

    @property
    def year_usd(self) -> float:
        return sum(self.months)

    @cached_property
    def _launch(self) -> tuple[MonthCost, FleetShape]:
        return self.fleet.month(self.volumes[0], self.fallback.launch.total)

    @cached_property
    def _month_12(self) -> tuple[MonthCost, FleetShape]:
        return self.fleet.month(self.volumes[1], self.fallback.month_12.total)

    @property
    def launch(self) -> MonthCost:
        return self._launch[0]

    @property
    def month_12(self) -> MonthCost:
        return self._month_12[0]

    @property
    def shape_launch(self) -> FleetShape:
        return self._launch[1]

    @property
    def shape_month_12(self) -> FleetShape:
        return self._month_12[1]


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
    return ApiPricer(agent, model, cache, catalog, batch=batch).month(conversations)


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
    months: bool = True, pricers: AgentPricers | None = None,
) -> ApiOption:
    """The caching setting cheapest over both months (launch + month 12) that raises neither month's
    cost above 'off'. Only the months' totals are compared; the winner's are itemised."""
    pricers = pricers or AgentPricers(agent, catalog)
    off = pricers.api(model, OPTIONS[0], batch=batch)
    off_launch, off_m12 = off.total(launch_volume), off.total(m12_volume)
    forced = agent.overrides.cache in ("5m", "1h")
    best: tuple[float, tuple[float, float], ApiPricer] | None = None
    for option in cache_choices(agent, batch):
        if not forced and option.enabled and never_cached(agent, model, option, batch):
            continue  # as below: its bill is the 'off' one, and it caches nothing
        pricer = off if option == OPTIONS[0] else pricers.api(model, option, batch=batch)
        launch, m12 = pricer.total(launch_volume), pricer.total(m12_volume)
        if not forced and option.enabled and (launch > off_launch or m12 > off_m12):
            continue
        if not forced and option.enabled and pricer.caches_nothing(m12_volume):
            continue  # below the model's minimum: nothing would be cached
        if best is None or launch + m12 < best[0] - 1e-9:
            best = (launch + m12, (launch, m12), pricer)
    if best is None:
        # build.py never asks for a route whose caching the pin rules out (see cache_choices)
        raise ValueError(f"no caching option for cache={agent.overrides.cache!r} on the {'batch' if batch else 'api'} route")
    totals, pricer = best[1], best[2]
    estimate = batch_estimate() if batch else api_estimate(model, agent.profile)
    found = ApiOption("batch" if batch else "api", model_id, model, pricer.option, estimate, pricer, (launch_volume, m12_volume), totals)
    return api_with_months(agent, found, launch_volume, m12_volume) if months else found


def never_cached(agent: AgentDecision, model: ClaudeModel, option: CacheOption, batch: bool) -> bool:
    """No breakpoint of the option ever reaches the model's minimum: the static prefix is under
    it, and so is the largest turn's prompt where the conversation breakpoint could apply."""
    p, minimum = agent.profile, model.min_cacheable_tokens
    if p.static_prefix_tokens >= minimum and p.static_prefix_tokens > 0:
        return False
    if not option.conversation or batch or p.turns <= 1:
        return True
    history = (p.turns - 1) * (p.input_tokens_per_turn + p.output_tokens_per_turn) if p.resend_history else 0
    return p.static_prefix_tokens + history + p.input_tokens_per_turn < minimum


def api_with_months(agent: AgentDecision, option: ApiOption, launch_volume: float, m12_volume: float) -> ApiOption:
    """The option priced month by month over the ramp."""
    priced = api_months_under(agent, option, launch_volume, m12_volume, math.inf)
    assert priced is not None  # nothing is over an infinite best
    return priced


def api_months_under(agent: AgentDecision, option: ApiOption, launch_volume: float, m12_volume: float, best: float) -> ApiOption | None:
    """`api_with_months`, or None as soon as the option's year is surely over `best`: the months
    are priced from month 11 back, and every month not yet priced bills at least
    `min_per_conversation` for the smaller of the launch and 12-month volumes."""
    if len(option.months) == 12:
        return option
    pricer = option.pricer
    volumes = ramp_volumes(agent, launch_volume, m12_volume)
    if best < math.inf:
        floor = min(launch_volume, m12_volume) * (1 - 1e-9) * pricer.min_per_conversation * (1 - 1e-9) - 1e-6
        known = option.totals[0] + option.totals[1]
        middle = [0.0] * 10
        for i in range(10, 0, -1):
            middle[i - 1] = month = pricer.total(volumes[i])
            known += month
            if (known + (i - 1) * floor) * (1 - 1e-9) > best:
                return None
    else:
        middle = [pricer.total(v) for v in volumes[1:11]]
    months = (option.totals[0], *middle, option.totals[1])
    return ApiOption(option.route, option.model_id, option.model, option.cache, option.estimate, pricer, option.volumes, option.totals, months)


def cheapest_priced(agent: AgentDecision, options: list[ApiOption], launch_volume: float, m12_volume: float) -> list[ApiOption]:
    """The options that can be the cheapest over the year, priced month by month, in order.

    An option is left out when its year is surely over the cheapest year priced before it: every
    month of the ramp bills at least `min_per_conversation` for the smaller of the launch and
    12-month volumes. What is left out could not be the minimum (nor tie with it), so
    `min(..., key=year_usd)` of the result is that of all the options.
    """
    priced: list[ApiOption] = []
    best = math.inf
    low = min(launch_volume, m12_volume) * (1 - 1e-9)
    for option in options:
        month = low * option.pricer.min_per_conversation * (1 - 1e-9) - 1e-6
        if (option.totals[0] + option.totals[1] + 10 * month) * (1 - 1e-9) > best:
            continue
        full = api_months_under(agent, option, launch_volume, m12_volume, best)
        if full is None:
            continue  # found part way through its months: its year is over the best
        priced.append(full)
        best = min(best, full.year_usd)
    return priced


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
) -> tuple[MonthCost, FleetShape]:
    """The fleet's month at `conversations`; `fallback_usd` is the Claude fallback's whole bill at
    that volume where the caller has it already (the fallback option's own months)."""
    if fallback_usd is None:
        fallback_usd = ApiPricer(agent, fallback.model, fallback.cache, catalog, batch=False).total(conversations)
    return FleetPricer(agent, open_model, instance, catalog, ops_overhead, idle_minutes).month(conversations, fallback_usd)


def build_gpu_option(ctx: AgentContext, open_id: str, instance_type: str, fallback: ApiOption) -> GpuOption:
    """Open model `open_id` on `instance_type`, priced at the agent's launch and 12-month volumes
    (the months between come with `with_months`, once the option meets the ceiling)."""
    open_model, instance = ctx.catalog.open_models[open_id], ctx.catalog.gpu_instances[instance_type]
    fleet = ctx.pricers.fleet(open_model, instance)
    launch, estimate_l = fleet.total_and_estimate(ctx.launch_v, fallback.launch.total)
    m12, estimate_m = fleet.total_and_estimate(ctx.m12_v, fallback.month_12.total)
    # the worse of the two months' latency is the one the ceiling must hold for
    estimate = max(estimate_l, estimate_m, key=lambda e: e.total_p95_s)
    return GpuOption(open_id, open_model, instance_type, instance, estimate, fallback, fleet, (ctx.launch_v, ctx.m12_v), (launch, m12))


def with_months(ctx: AgentContext, option: GpuOption, best: float = math.inf) -> GpuOption | None:
    """The option priced month by month over the ramp (the fallback's months are its Claude bill),
    or None as soon as its year is surely over `best`: the months are priced from month 11 back,
    and every month not yet priced costs at least `fleet_month_floor` of the base replicas of the
    smaller of the launch and 12-month volumes (the base count never falls as volume grows)."""
    volumes = ramp_volumes(ctx.agent, ctx.launch_v, ctx.m12_v)
    fleet = option.fleet
    fallback = option.fallback
    if len(fallback.months) == 12:
        fb = fallback.months
    else:
        claude = ctx.pricers.api(fallback.model, fallback.cache, batch=False)
        fb = tuple(claude.total(v) for v in volumes)
    middle = [0.0] * 10
    if best < math.inf:
        floor = fleet_month_floor(ctx, option.instance, fleet.base_at(min(ctx.launch_v, ctx.m12_v) * (1 - 1e-9)))
        known = option.totals[0] + option.totals[1]
        for i in range(10, 0, -1):
            middle[i - 1] = month = fleet.total(volumes[i], fb[i])
            known += month
            if (known + (i - 1) * floor) * (1 - 1e-9) > best:
                return None
    else:
        middle = [fleet.total(volumes[i], fb[i]) for i in range(1, 11)]
    months = (option.totals[0], *middle, option.totals[1])
    return GpuOption(option.open_id, option.open_model, option.instance_type, option.instance, option.estimate, fallback, fleet,
                     option.volumes, option.totals, months)


def gpu_month_total(ctx: AgentContext, open_model: OpenModel, instance: GpuInstance, fallback: ApiOption, volume: float,
                    fallback_usd: float | None) -> float:
    """The fleet's month total alone: no latency estimate, no items (the ramp, the break-even scan)."""
    if fallback_usd is None:
        fallback_usd = ctx.pricers.api(fallback.model, fallback.cache, batch=False).total(volume)
    return ctx.pricers.fleet(open_model, instance).total(volume, fallback_usd)


def fleet_month_floor(ctx: AgentContext, instance: GpuInstance, replicas: int = 1) -> float:
    """A bound no month of a fleet on `instance` with at least `replicas` base replicas costs less
    than: its ops overhead and those replicas through the active hours at the cheaper rate (the
    share of a cent lost to rounding the month's total to six decimals, and float sums, taken off
    so the bound stays a bound)."""
    days, hours = ctx.catalog.assumptions.days_per_month, ctx.agent.volume.resolved_active_hours
    month = ctx.ops_overhead + replicas * (hours * days * min(instance.spot_usd_per_hour, instance.on_demand_usd_per_hour))
    return month * (1 - 1e-9) - 1e-6
