"""Which fleets an agent could run on, and the cheapest of them over the year.

Every (open model, instance type) pair that meets the quality floor and holds the largest
request is a candidate. A fleet month costs at least its ops overhead and one replica through
the active hours, so each candidate's year has a lower bound known before it is priced at all:
the candidates are priced in the order of that bound, and only while the bound is under the
cheapest year found. What comes out is exactly what pricing every candidate and then walking
them by `year_floor`, stopping at the first floor not under the cheapest year found, would give
(tests/planner/test_pricers.py does that walk): the same cheapest fleet, ties included.
"""

from __future__ import annotations

import heapq
import math

from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.context import open_misfit
from agentdeploy.planner.fleet import fits
from agentdeploy.planner.options import ApiOption, GpuOption, build_gpu_option, fleet_month_floor, with_months
from agentdeploy.planner.quality import judge


def gpu_options(ctx: AgentContext, fallback: ApiOption | None) -> tuple[list[GpuOption], list[GpuOption], list[tuple[str, int]]]:
    """Fleets that meet floor, context and ceiling and can be the cheapest over the year, priced
    month by month; those that missed only the ceiling (every one only where the route is pinned
    to gpu, the one case whose advice lists them); and the open models meeting the floor whose
    context is too small (id, context tokens)."""
    agent, catalog = ctx.agent, ctx.catalog
    if ctx.audience == "batch" and ctx.route_pin != "gpu":
        return [], [], []
    if fallback is None:
        return [], [], []
    pinned = ctx.pinned
    candidates: list[tuple[str, str]] = []
    too_small: list[tuple[str, int]] = []
    for open_id, om in catalog.open_models.items():
        if pinned and pinned in catalog.open_models and open_id != pinned:
            continue
        if pinned and pinned in catalog.claude_models:
            continue
        if not judge(open_id, om, agent.quality).passes and open_id != pinned:
            continue
        if open_misfit(agent, om, ctx.margin):
            too_small.append((open_id, om.context_tokens))
            continue
        candidates += [(open_id, itype) for itype, inst in catalog.gpu_instances.items()
                       if (not agent.overrides.instance_type or itype == agent.overrides.instance_type) and fits(om, inst)]
    priced, misses = cheapest_fleets(ctx, candidates, fallback, every=ctx.route_pin == "gpu")
    return priced, misses, too_small


def year_floor(ctx: AgentContext, option: GpuOption) -> float:
    """A bound under the option's year: its launch and 12-month totals plus ten of the cheapest
    months its fleet can have (ops overhead and one replica through the active hours)."""
    days, hours = ctx.catalog.assumptions.days_per_month, ctx.agent.volume.resolved_active_hours
    month = ctx.ops_overhead + hours * days * min(option.instance.spot_usd_per_hour, option.instance.on_demand_usd_per_hour)
    return option.totals[0] + option.totals[1] + 10 * month


def cheapest_fleets(ctx: AgentContext, candidates: list[tuple[str, str]], fallback: ApiOption, *, every: bool) -> tuple[list[GpuOption], list[GpuOption]]:
    """The candidates meeting the ceiling that can be the cheapest over the year, priced month by
    month, and the misses seen (all of them with `every`).

    Before a candidate is priced its year is known to be at least twelve times its instance's
    cheapest month (`fleet_month_floor`, which is under `year_floor`'s months). The walk merges
    two queues: the priced candidates by `year_floor` and the unpriced ones by that bound. A
    priced one is taken only when its floor is under every unpriced bound (so no unpriced
    candidate could come before it, ties included); otherwise the next unpriced one is priced. It
    stops where the plain walk stops: at a floor not under the best year found, or once every
    unpriced bound is at or over it. A priced one whose year is surely over the best (its base
    replicas, or its months part way) is left out: pricing it would not change the best.
    """
    bounds = [12 * fleet_month_floor(ctx, ctx.catalog.gpu_instances[itype]) * (1 - 1e-9) for _, itype in candidates]
    unpriced = sorted(range(len(candidates)), key=lambda i: (bounds[i], i))
    ready: list[tuple[float, int, GpuOption]] = []  # priced at launch and month 12, within the ceiling: (floor, index, option)
    misses: list[tuple[int, GpuOption]] = []

    def price(i: int) -> None:
        option = build_gpu_option(ctx, *candidates[i], fallback)
        if ctx.measure != "none" and option.estimate.measured(ctx.measure) > (ctx.ceiling or math.inf):
            misses.append((i, option))
        else:
            heapq.heappush(ready, (year_floor(ctx, option), i, option))

    if every:
        for i in unpriced:
            price(i)
        unpriced = []
    priced: list[GpuOption] = []
    best = math.inf
    k = 0
    while ready or k < len(unpriced):
        bound = bounds[unpriced[k]] if k < len(unpriced) else math.inf
        if ready and ready[0][0] < bound:
            floor, _, option = heapq.heappop(ready)
            if floor >= best:
                break
            if _year_over(ctx, option, best):
                continue  # it cannot be the cheapest: pricing its months would change nothing
            full = with_months(ctx, option, best)
            if full is None:
                continue  # the same, found part way through its months
            priced.append(full)
            best = min(best, full.year_usd)
        else:
            if bound >= best:
                break
            price(unpriced[k])
            k += 1
    return priced, [option for _, option in sorted(misses, key=lambda m: m[0])]


def _year_over(ctx: AgentContext, option: GpuOption, best: float) -> bool:
    """Whether the option's year is surely over `best` before its months are priced: every month
    of the ramp has at least the base replicas of the smaller of its launch and 12-month volumes
    (the base count never falls as volume grows)."""
    base = option.fleet.base_at(min(ctx.launch_v, ctx.m12_v) * (1 - 1e-9))
    if base <= 1:
        return False  # no better than the floor it was walked by
    bound = option.totals[0] + option.totals[1] + 10 * fleet_month_floor(ctx, option.instance, base)
    return bound * (1 - 1e-9) > best
