"""From a validated decision file to a plan: route, model and settings per agent, with reasons.

For each agent: the quality floor rules out models; the latency ceiling rules out the rest that
are too slow; among what is left the Batch API wins when the agent tolerates hours, a self-hosted
fleet wins only when an open model meets floor and ceiling *and* costs less than the API at the
year's ramp (month by month from launch to the 12-month volume); otherwise the cheapest qualifying Claude model on the realtime API. When nothing
qualifies the planner names the corner to relax and by how much.

This module is the route choice. What it reads about an agent is worked out once in
agent_context.py; relax.py words the advice when there is no plan, explain.py the why-lines,
record.py writes the chosen option out as the plan, curves.py prices any volume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agentdeploy.errors import Infeasible, InvalidInput
from agentdeploy.planner import explain, relax
from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.budget import with_infrastructure
from agentdeploy.planner.catalog import Catalog, load_catalog
from agentdeploy.planner.context import claude_misfit, open_misfit
from agentdeploy.planner.curves import baseline
from agentdeploy.planner.fleet_choice import gpu_options
from agentdeploy.planner.infra import infrastructure, shares
from agentdeploy.planner.latency import BATCH_LIMIT_S, BATCH_P95_S
from agentdeploy.planner.options import (
    ApiOption,
    Choice,
    GpuOption,
    api_with_months,
    best_api_option,
    cache_choices,
    cheapest_priced,
)
from agentdeploy.planner.plan import AgentPlan, BudgetPlan, CatalogRef, MonthlyUSD, Plan, StackInfrastructure, Totals
from agentdeploy.planner.quality import Verdict, judge
from agentdeploy.planner.ramp import best_switch
from agentdeploy.planner.record import Alternatives, agent_plan
from agentdeploy.planner.spec import AgentDecision, Spec

#: `--scale` is a what-if factor: beyond this the question is no longer about this stack.
MAX_SCALE = 10_000.0

T = TypeVar("T")


def spec_catalog(spec: Spec, override_files: Sequence[Path] = ()) -> Catalog:
    """The catalog a decision file is planned with: built-in, the user's catalog.d (spot prices of
    the stack's own region only), `--catalog` files, then the file's own `catalog:` section.
    `deploy plan`, `deploy render`, the Pulumi program and the operations commands all price with
    this, so what was reviewed is what gets deployed and reported against."""
    return load_catalog(list(override_files), inline_overrides=spec.catalog, inline_source=spec.source,
                        region=spec.stack.region)


def build_plan(spec: Spec, catalog: Catalog | None = None, *, scale: float = 1.0) -> Plan:
    """Plan every agent of `spec`; raise `Infeasible` naming each agent that has no option."""
    check_scale(scale)
    catalog = catalog or spec_catalog(spec)
    plans = plan_agents(spec, catalog, scale, _same)
    infra = infrastructure(spec, plans, catalog)
    share = shares(infra, plans)
    plans = [with_share(p, share[p.name], spec, catalog) for p in plans]
    return stack_plan(spec, catalog, scale, plans, infra)


def _same(plan: AgentPlan) -> AgentPlan:
    return plan


def plan_agents(spec: Spec, catalog: Catalog, scale: float, keep: Callable[[AgentPlan], T]) -> list[T]:
    """`keep(plan)` of each agent's plan before its share of the fixed cost is known (what
    `infrastructure` reads); raise `Infeasible` naming each agent that has no option.
    `deploy plan --json` keeps each agent's JSON text instead of its plan (planner/jsonstream.py)."""
    check_scale(scale)
    relax.check_references(spec, catalog)
    kept: list[T] = []
    problems: list[str] = []
    for name, agent in spec.agents.items():
        result = plan_agent(name, agent, spec, catalog, scale)
        if isinstance(result, str):
            problems.append(result)
        elif not problems:
            kept.append(keep(result))
    if problems:
        raise Infeasible(
            f"{len(problems)} agent{'s' if len(problems) > 1 else ''} cannot meet all three corners",
            details=problems,
            hint="relax the corner named for each agent in the decision file, then plan again",
        )
    return kept


def stack_plan(spec: Spec, catalog: Catalog, scale: float, plans: list[AgentPlan], infra: StackInfrastructure) -> Plan:
    """The plan of the stack: its agents (with their shares), totals, baseline and infrastructure."""
    agents = MonthlyUSD(
        launch=round(sum(p.cost.monthly_usd.launch for p in plans), 2),
        month_12=round(sum(p.cost.monthly_usd.month_12 for p in plans), 2),
    )
    totals = Totals(
        monthly_usd=MonthlyUSD(launch=round(agents.launch + infra.monthly_usd, 2), month_12=round(agents.month_12 + infra.monthly_usd, 2)),
        agents_usd=agents,
        infrastructure_usd=infra.monthly_usd,
    )
    return Plan(
        stack=spec.stack.name,
        region=spec.stack.region,
        alert_emails=list(spec.stack.alert_emails),
        volume_scale=scale,
        agents=plans,
        totals=totals,
        baseline=baseline(spec, catalog, totals, scale, infra.items["spend_alarms"]),
        catalog=CatalogRef(version=catalog.version, as_of=str(catalog.as_of), overrides=list(catalog.applied_overrides)),
        infrastructure=infra,
    )


def with_share(plan: AgentPlan, share_usd: float, spec: Spec, catalog: Catalog) -> AgentPlan:
    """The agent's plan with its budget carrying its share of the stack's fixed cost."""
    budget, why = shared_budget(plan, share_usd, spec, catalog)
    return plan.model_copy(update={"budget": budget, "why": why})


def shared_budget(plan: AgentPlan, share_usd: float, spec: Spec, catalog: Catalog) -> tuple[BudgetPlan, list[str]]:
    """The agent's budget carrying its share of the stack's fixed cost, and its why-lines saying so."""
    budget = with_infrastructure(plan, share_usd, spec.stack, catalog.assumptions.days_per_month)
    why = [explain.budget_line_with_share(spec.stack.budget_headroom, budget, share_usd) if w.startswith("budget $") else w for w in plan.why]
    return budget, why


def check_scale(scale: float) -> None:
    """`--scale nan` or `inf` would reach the fleet arithmetic as a non-number: refuse it here."""
    if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise InvalidInput(
            f"--scale must be a finite number greater than 0 and at most {MAX_SCALE:,.0f} (got {scale!r})",
            hint="e.g. --scale 2 for twice the volume, --scale 0.5 for half",
        )


def plan_agent(name: str, agent: AgentDecision, spec: Spec, catalog: Catalog, scale: float) -> AgentPlan | str:
    """The agent's plan, or a one-line explanation of which corner to relax."""
    ctx = AgentContext.of(name, agent, spec, catalog, scale)
    why = explain.pin_reasons(agent, catalog)
    shortlist = _shortlist(ctx, why)
    if isinstance(shortlist, str):
        return shortlist
    batch_ok = ctx.audience == "batch" or (ctx.audience == "backend" and ctx.ceiling is not None and ctx.ceiling >= BATCH_P95_S)
    if ctx.route_pin == "batch" and not batch_ok:
        return relax.batch_pin_too_fast(ctx)
    found = _candidates(ctx, shortlist, batch_ok, why)
    choice = _choose(ctx, found, why)
    if choice is None:
        return relax.gpu_pin_infeasible(ctx, found.fallback, found.gpu_misses) if ctx.route_pin == "gpu" else relax.infeasible(ctx, found.api)
    budget_usd = agent.budget_usd_per_month
    if budget_usd is not None and choice.launch.total > budget_usd:
        return relax.over_budget(ctx, choice, budget_usd)
    return agent_plan(ctx, choice, Alternatives(found.api, found.best_gpu, shortlist.verdicts), why)


# --- which models qualify ----------------------------------------------------------------------


@dataclass(frozen=True)
class Shortlist:
    """The Claude models that meet the floor and whose context holds the largest request."""

    #: Quality verdicts of every Claude model considered, by id.
    verdicts: dict[str, Verdict]
    models: list[str]
    #: Claude models meeting the floor whose context is too small: (id, context tokens).
    too_small: list[tuple[str, int]]


def _shortlist(ctx: AgentContext, why: list[str]) -> Shortlist | str:
    """Quality first, then the context window; a pin keeps its model in (with a why-line) unless
    the model cannot take the largest request, which no pin can fix."""
    agent, catalog, pinned = ctx.agent, ctx.catalog, ctx.pinned
    claude_ids = [
        m for m, cm in catalog.claude_models.items() if (cm.selectable or m == pinned) and (not pinned or m == pinned or pinned in catalog.open_models)
    ]
    verdicts = {m: judge(m, catalog.claude_models[m], agent.quality) for m in claude_ids}
    good_quality = [m for m in claude_ids if verdicts[m].passes or m == pinned]
    if pinned in catalog.claude_models and not verdicts[pinned].passes:
        why.append(f"pinned {pinned} although {verdicts[pinned].reason}")

    # the context window: a model that cannot take the largest request is no candidate at all
    too_small = {m: r for m in good_quality if (r := claude_misfit(agent, catalog.claude_models[m], ctx.margin))}
    open_pin = catalog.open_models.get(pinned) if pinned else None
    pinned_misfit = (too_small.get(pinned) if pinned else None) or (open_misfit(agent, open_pin, ctx.margin) if open_pin else None)
    if pinned_misfit:
        return relax.pinned_misfit(ctx, pinned_misfit)
    if good_quality and len(too_small) == len(good_quality):
        return relax.context_infeasible(ctx, good_quality)
    if pinned and open_pin is not None and not (verdict := judge(pinned, open_pin, agent.quality)).passes:
        why.append(f"pinned {pinned} although {verdict.reason}")
    return Shortlist(
        verdicts=verdicts,
        models=[m for m in good_quality if m not in too_small],
        too_small=[(m, catalog.claude_models[m].context_tokens) for m in too_small],
    )


# --- what each route would cost ----------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    """Every option priced for the agent, by route."""

    #: Realtime API, one per shortlisted model; those of them within the ceiling that could be the
    #: cheapest over the year, priced month by month; the same of the Batch API.
    api: list[ApiOption]
    fast_api: list[ApiOption]
    batch: list[ApiOption]
    #: The Claude model a fleet falls back to (None: no Claude model meets the floor).
    fallback: ApiOption | None
    #: Fleets that meet floor, context and ceiling and could be the cheapest over the year, and
    #: those that missed only the ceiling (all of them where the route is pinned to gpu).
    gpu: list[GpuOption]
    gpu_misses: list[GpuOption]

    @property
    def chosen_api(self) -> ApiOption | None:
        return min(self.fast_api, key=lambda o: o.year_usd, default=None)

    @property
    def best_gpu(self) -> GpuOption | None:
        return min(self.gpu, key=lambda o: o.year_usd, default=None)


def _candidates(ctx: AgentContext, shortlist: Shortlist, batch_ok: bool, why: list[str]) -> Candidates:
    agent, catalog, measure, ceiling = ctx.agent, ctx.catalog, ctx.measure, ctx.ceiling
    models = shortlist.models

    def api_option(m: str, *, batch: bool) -> ApiOption:
        return best_api_option(agent, m, catalog.claude_models[m], catalog, ctx.launch_v, ctx.m12_v, batch=batch, months=False,
                               pricers=ctx.pricers)

    def priced(o: ApiOption) -> ApiOption:
        return api_with_months(agent, o, ctx.launch_v, ctx.m12_v)

    # the months between launch and 12 are priced only for the options that can be chosen
    api_options = [api_option(m, batch=False) for m in models]
    fast = [o for o in api_options if measure == "none" or o.estimate.measured(measure) <= (ceiling or math.inf)]
    fast_api = cheapest_priced(agent, fast, ctx.launch_v, ctx.m12_v)
    api_options = [next((f for f in fast_api if f.model_id == o.model_id), o) for o in api_options]
    batch_options: list[ApiOption] = []
    if batch_ok and ctx.route_pin in (None, "batch"):
        if not cache_choices(agent, batch=True):
            why.append(explain.batch_ruled_out_by_cache_pin())
        else:
            batch_options = cheapest_priced(agent, [api_option(m, batch=True) for m in models], ctx.launch_v, ctx.m12_v)
            if ceiling is not None and ceiling < BATCH_LIMIT_S:
                why.append(explain.batch_may_overrun(ceiling))

    chosen_api = min(fast_api, key=lambda o: o.year_usd, default=None)
    # A fleet's Claude fallback must meet the floor; when none meets the ceiling too, the fastest
    # one still catches errors and spot losses (slower, but an answer), and the plan says so.
    fallback = chosen_api or min(api_options, key=lambda o: o.estimate.measured(measure) if measure != "none" else 0, default=None)
    fallback = priced(fallback) if fallback is not None else None
    gpu, misses, open_too_small = gpu_options(ctx, fallback)
    excluded = shortlist.too_small + open_too_small
    if excluded:
        why.append(explain.context_note(ctx, excluded))
    if chosen_api is None and fallback is not None and gpu:
        why.append(explain.slow_fallback(ctx, fallback))
    return Candidates(api_options, fast_api, batch_options, fallback, gpu, misses)


# --- the route ---------------------------------------------------------------------------------


def _choose(ctx: AgentContext, found: Candidates, why: list[str]) -> Choice | None:
    """A pinned gpu route takes the cheapest fleet; batch wins when allowed; otherwise the cheapest
    API model within the ceiling, unless a fleet is cheaper at 12 months or the only one fast enough."""
    if ctx.route_pin == "gpu":
        return found.best_gpu
    if found.batch:
        batch = min(found.batch, key=lambda o: o.year_usd)
        why.append(explain.batch_chosen(ctx, batch))
        return batch
    api, best_gpu = found.chosen_api, found.best_gpu
    if ctx.route_pin == "api" or best_gpu is None:
        return api
    if api is None:
        why.append(explain.only_gpu_fast_enough(best_gpu))
        return best_gpu
    switch = best_switch(api, best_gpu)
    if best_gpu.year_usd < api.year_usd and (switch is None or best_gpu.year_usd <= switch.year_usd):
        why.append(explain.gpu_cheaper(best_gpu, api))
        return best_gpu
    why.append(explain.api_cheaper(best_gpu, api))
    return api
