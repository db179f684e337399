"""From a validated decision file to a plan: route, model and settings per agent, with reasons.

For each agent: the quality floor rules out models; the latency ceiling rules out the rest that
are too slow; among what is left the Batch API wins when the agent tolerates hours, a self-hosted
fleet wins only when an open model meets floor and ceiling *and* costs less than the API at the
12-month volume; otherwise the cheapest qualifying Claude model on the realtime API. When nothing
qualifies the planner names the corner to relax and by how much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from agentdeploy.errors import Infeasible, InvalidInput
from agentdeploy.planner.breakeven import break_even
from agentdeploy.planner.catalog import Catalog, ClaudeModel, OpenModel, load_catalog
from agentdeploy.planner.fleet import fits, on_demand_base
from agentdeploy.planner.latency import BATCH_LIMIT_S, BATCH_P95_S
from agentdeploy.planner.options import ApiOption, GpuOption, api_cost_at, best_api_option, build_gpu_option, cache_choices, gpu_cost_at
from agentdeploy.planner.plan import (
    AgentPlan,
    Baseline,
    BudgetPlan,
    CacheDecision,
    CatalogRef,
    CostEstimate,
    FleetPlan,
    LatencyEstimate,
    MonthlyUSD,
    Plan,
    QualityDecision,
    Totals,
)
from agentdeploy.planner.caching import OPTIONS
from agentdeploy.planner.context import max_tokens_for, misfit, planned_request
from agentdeploy.planner.quality import judge, quality_floor
from agentdeploy.planner.spec import Agent, Spec

#: `--scale` is a what-if factor: beyond this the question is no longer about this stack.
MAX_SCALE = 10_000.0
#: vLLM's max_tokens cap on the fleet (the gateway's limit per request).
GPU_MAX_TOKENS = 32768


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
    _check_references(spec, catalog)
    plans: list[AgentPlan] = []
    problems: list[str] = []
    for name, agent in spec.agents.items():
        result = plan_agent(name, agent, spec, catalog, scale)
        if isinstance(result, str):
            problems.append(result)
        else:
            plans.append(result)
    if problems:
        raise Infeasible(
            f"{len(problems)} agent{'s' if len(problems) > 1 else ''} cannot meet all three corners",
            details=problems,
            hint="relax the corner named for each agent in the decision file, then plan again",
        )
    totals = Totals(
        monthly_usd=MonthlyUSD(
            launch=round(sum(p.cost.monthly_usd.launch for p in plans), 2),
            month_12=round(sum(p.cost.monthly_usd.month_12 for p in plans), 2),
        )
    )
    return Plan(
        stack=spec.stack.name,
        region=spec.stack.region,
        alert_emails=list(spec.stack.alert_emails),
        volume_scale=scale,
        agents=plans,
        totals=totals,
        baseline=baseline(spec, catalog, totals, scale),
        catalog=CatalogRef(version=catalog.version, as_of=str(catalog.as_of), overrides=list(catalog.applied_overrides)),
    )


def check_scale(scale: float) -> None:
    """`--scale nan` or `inf` would reach the fleet arithmetic as a non-number: refuse it here."""
    if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise InvalidInput(
            f"--scale must be a finite number greater than 0 and at most {MAX_SCALE:,.0f} (got {scale!r})",
            hint="e.g. --scale 2 for twice the volume, --scale 0.5 for half",
        )


def effective_route(agent: Agent, catalog: Catalog) -> str | None:
    """The route the overrides decide: the pinned one, or gpu where an open model or an instance type is pinned."""
    o = agent.overrides
    if o.route:
        return o.route
    if o.model in catalog.open_models or o.instance_type:
        return "gpu"
    return None


def _pin_reasons(agent: Agent, catalog: Catalog) -> list[str]:
    """One `why` line per override, so a pinned decision is never mistaken for the planner's."""
    o = agent.overrides
    lines = []
    if o.model:
        implied = " (an open-weight model: self-hosted, route gpu)" if o.model in catalog.open_models else ""
        lines.append(f"model {o.model} pinned in overrides{implied}")
    if o.route:
        lines.append(f"route {o.route} pinned in overrides")
    if o.instance_type:
        lines.append(f"instance type {o.instance_type} pinned in overrides (route gpu)")
    if o.cache != "auto":
        lines.append(f"prompt caching pinned to {o.cache} in overrides")
    return lines


def _check_references(spec: Spec, catalog: Catalog) -> None:
    details = []
    for name, agent in spec.agents.items():
        model = agent.overrides.model
        if model and model not in catalog.claude_models and model not in catalog.open_models:
            known = sorted(catalog.claude_models) + sorted(catalog.open_models)
            details.append(f"{spec.where('agents', name, 'overrides', 'model')}: unknown model {model!r}; known: {', '.join(known)}")
        itype = agent.overrides.instance_type
        if itype and itype not in catalog.gpu_instances:
            details.append(
                f"{spec.where('agents', name, 'overrides', 'instance_type')}: unknown instance type {itype!r}; "
                f"known: {', '.join(sorted(catalog.gpu_instances))}"
            )
        if agent.quality.evals:
            for m in agent.quality.evals.scores:
                if m not in catalog.claude_models and m not in catalog.open_models:
                    details.append(f"{spec.where('agents', name, 'quality', 'evals', 'scores', m)}: eval score for unknown model {m!r}")
        if model in catalog.open_models and agent.overrides.route in ("api", "batch"):
            details.append(f"{spec.where('agents', name, 'overrides')}: open model {model!r} can only run on route 'gpu'")
        if model in catalog.claude_models and agent.overrides.route == "gpu":
            details.append(f"{spec.where('agents', name, 'overrides')}: Claude model {model!r} cannot be self-hosted; pin an open model")
        details += _pin_conflicts(name, agent, spec, catalog)
    if details:
        raise InvalidInput(f"{spec.source_path or 'decision file'}: overrides name things the catalog lacks or contradict each other", details=details)


def _pin_conflicts(name: str, agent: Agent, spec: Spec, catalog: Catalog) -> list[str]:
    """Pins that contradict each other or the route: invalid input, not an infeasible plan."""
    o = agent.overrides
    out = []
    itype = o.instance_type if o.instance_type in catalog.gpu_instances else None
    if itype and o.route in ("api", "batch"):
        out.append(f"{spec.where('agents', name, 'overrides', 'instance_type')}: agents.{name}.overrides.instance_type: {itype!r} pins a GPU fleet but route {o.route!r} is pinned; drop one of them")
    if itype and o.model in catalog.claude_models and o.route != "gpu":
        out.append(f"{spec.where('agents', name, 'overrides', 'instance_type')}: agents.{name}.overrides.instance_type: {itype!r} pins a GPU fleet but Claude model {o.model!r} cannot be self-hosted; pin an open model ({', '.join(sorted(catalog.open_models))})")
    if itype and o.model in catalog.open_models and not fits(catalog.open_models[o.model], catalog.gpu_instances[itype]):
        hosts = [t for t, inst in catalog.gpu_instances.items() if fits(catalog.open_models[o.model], inst)]
        out.append(
            f"{spec.where('agents', name, 'overrides', 'instance_type')}: agents.{name}.overrides.instance_type: {o.model} does not run on {itype} "
            f"({catalog.open_models[o.model].memory_gb:g} GB needed, {catalog.gpu_instances[itype].gpu_memory_gb:g} GB there, or no speed figures for its size); "
            f"instance types it runs on: {', '.join(hosts) or 'none in the catalog'}"
        )
    route = effective_route(agent, catalog)
    if o.cache == "5m" and (route == "batch" or (route is None and agent.latency.resolved_audience == "batch")):
        out.append(
            f"{spec.where('agents', name, 'overrides', 'cache')}: agents.{name}.overrides.cache: '5m' cannot apply to a batch agent: a batch may run longer "
            "than 5 minutes, so the Batch API route always uses the 1 h TTL; valid here: auto, off, 1h "
            "(or pin route: api to answer in real time with a 5 m cache)"
        )
    return out


def volumes(agent: Agent, scale: float) -> tuple[float, float]:
    return agent.volume.conversations_per_month * scale, agent.volume.month_12 * scale


def plan_agent(name: str, agent: Agent, spec: Spec, catalog: Catalog, scale: float) -> AgentPlan | str:
    """The agent's plan, or a one-line explanation of which corner to relax."""
    launch_v, m12_v = volumes(agent, scale)
    lat = agent.latency
    audience, measure, ceiling = lat.resolved_audience, lat.resolved_measure, lat.p95_s
    floor = quality_floor(agent.quality)
    why: list[str] = _pin_reasons(agent, catalog)
    pinned = agent.overrides.model
    route_pin = effective_route(agent, catalog)
    margin = catalog.assumptions.max_tokens_margin
    claude_ids = [
        m for m, cm in catalog.claude_models.items() if (cm.selectable or m == pinned) and (not pinned or m == pinned or pinned in catalog.open_models)
    ]
    verdicts = {m: judge(m, catalog.claude_models[m], agent.quality) for m in claude_ids}
    good_quality = [m for m in claude_ids if verdicts[m].passes or m == pinned]
    if pinned in catalog.claude_models and not verdicts[pinned].passes:
        why.append(f"pinned {pinned} although {verdicts[pinned].reason}")

    # the context window: a model that cannot take the largest request is no candidate at all
    too_small = {m: r for m in good_quality if (r := claude_misfit(agent, catalog.claude_models[m], margin))}
    open_pin = catalog.open_models.get(pinned) if pinned else None
    pinned_misfit = too_small.get(pinned) or (open_misfit(agent, open_pin, margin) if open_pin else None)
    if pinned_misfit:
        return (
            f"{spec.where('agents', name, 'overrides', 'model')}: {name}: pinned {pinned}: {pinned_misfit}; "
            "relax the profile (fewer turns, a shorter static prefix, less input per turn, or resend_history: false) or unpin the model"
        )
    if good_quality and len(too_small) == len(good_quality):
        return _context_infeasible(name, agent, spec, catalog, good_quality)
    excluded = [(m, catalog.claude_models[m].context_tokens) for m in too_small]
    good_quality = [m for m in good_quality if m not in too_small]
    if open_pin is not None and not judge(pinned, open_pin, agent.quality).passes:
        why.append(f"pinned {pinned} although {judge(pinned, open_pin, agent.quality).reason}")

    batch_ok = audience == "batch" or (audience == "backend" and ceiling is not None and ceiling >= BATCH_P95_S)
    if route_pin == "batch" and not batch_ok:
        return f"{spec.where('agents', name, 'overrides', 'route')}: {name}: route 'batch' is pinned but the latency ceiling ({ceiling} s) is under an hour; raise latency.p95_s to at least {BATCH_P95_S:.0f} or unpin the route"

    api_options = [best_api_option(agent, m, catalog.claude_models[m], catalog, launch_v, m12_v, batch=False) for m in good_quality]
    fast_api = [o for o in api_options if measure == "none" or o.estimate.measured(measure) <= (ceiling or math.inf)]
    batch_options: list[ApiOption] = []
    if batch_ok and route_pin in (None, "batch"):
        if not cache_choices(agent, batch=True):
            why.append("route api, not batch: the pinned 5m cache TTL rules out the Batch API, which uses the 1 h TTL")
        else:
            batch_options = [best_api_option(agent, m, catalog.claude_models[m], catalog, launch_v, m12_v, batch=True) for m in good_quality]
            if ceiling is not None and ceiling < BATCH_LIMIT_S:
                why.append(f"batch results usually arrive within {BATCH_P95_S / 3600:.0f} h but may take up to 24 h, beyond the {ceiling:.0f} s ceiling in rare cases")

    chosen_api = min(fast_api, key=lambda o: o.month_12.total, default=None)
    # A fleet's Claude fallback must meet the floor; when none meets the ceiling too, the fastest
    # one still catches errors and spot losses (slower, but an answer), and the plan says so.
    fallback = chosen_api or min(api_options, key=lambda o: o.estimate.measured(measure) if measure != "none" else 0, default=None)
    gpu_candidates, gpu_misses = _gpu_options(agent, spec, catalog, fallback, launch_v, m12_v, measure, ceiling, route_pin, excluded)
    if excluded:
        why.append(_context_note(agent, catalog, excluded))
    if chosen_api is None and fallback is not None and gpu_candidates:
        why.append(
            f"no Claude model meets the {ceiling:g} s ceiling: while falling back, {fallback.model_id} answers in "
            f"~{fallback.estimate.measured(measure):.1f} s p95"
        )

    choice: ApiOption | GpuOption | None
    if route_pin == "gpu":
        choice = min(gpu_candidates, key=lambda o: o.month_12.total, default=None)
        if choice is None:
            return _gpu_pin_infeasible(name, agent, spec, floor, measure, ceiling, fallback, gpu_misses)
    elif batch_options:
        choice = min(batch_options, key=lambda o: o.month_12.total)
        why.append(f"route batch: nobody waits for {name}, and the Batch API takes {choice.model.batch_discount:.0%} off input and output")
    else:
        choice = chosen_api
        if choice is None and route_pin != "api" and gpu_candidates:
            choice = min(gpu_candidates, key=lambda o: o.month_12.total)
            why.append(f"route gpu: only a self-hosted {choice.open_id} on {choice.instance_type} meets the latency ceiling")
        elif choice is not None and route_pin != "api":
            best_gpu = min(gpu_candidates, key=lambda o: o.month_12.total, default=None)
            if best_gpu is not None and best_gpu.month_12.total < choice.month_12.total:
                why.append(
                    f"route gpu: {best_gpu.open_id} on {best_gpu.instance_type} costs ${best_gpu.month_12.total:,.0f}/month at 12-month volume vs ${choice.month_12.total:,.0f} on {choice.model_id}"
                )
                choice = best_gpu
            elif best_gpu is not None:
                why.append(
                    f"route api: self-hosting {best_gpu.open_id} on {best_gpu.instance_type} would cost ${best_gpu.month_12.total:,.0f}/month at 12-month volume vs ${choice.month_12.total:,.0f} on the API"
                )
    if choice is None:
        return _infeasible(name, agent, spec, catalog, api_options, floor, measure, ceiling)

    budget = _budget(agent, spec, choice)
    if agent.budget_usd_per_month is not None and choice.launch.total > agent.budget_usd_per_month:
        return _over_budget(name, agent, spec, choice, api_options, batch_options, catalog)
    best_gpu = min(gpu_candidates, key=lambda o: o.month_12.total, default=None)
    return _agent_plan(name, agent, spec, catalog, choice, floor, verdicts, why, budget, launch_v, m12_v, measure, ceiling, audience, api_options, best_gpu)


def claude_misfit(agent: Agent, model: ClaudeModel, margin: float) -> str | None:
    request = planned_request(agent.profile, model.max_output_tokens, margin)
    return misfit(model.context_tokens, request)


def open_misfit(agent: Agent, model: OpenModel, margin: float) -> str | None:
    request = planned_request(agent.profile, min(model.context_tokens, GPU_MAX_TOKENS), margin)
    return misfit(model.context_tokens, request)


def _context_infeasible(name: str, agent: Agent, spec: Spec, catalog: Catalog, candidates: list[str]) -> str:
    """Every model meeting the floor has too small a context: name the largest, and by how much to shrink."""
    margin = catalog.assumptions.max_tokens_margin
    best = max(candidates, key=lambda m: catalog.claude_models[m].context_tokens)
    model = catalog.claude_models[best]
    request = planned_request(agent.profile, model.max_output_tokens, margin)
    return (
        f"{spec.where('agents', name, 'profile')}: {name}: the largest request ({request.words()}) fits the context of no model "
        f"meeting quality floor tier {quality_floor(agent.quality)} (largest: {best}, {model.context_tokens:,} tokens); relax the profile: "
        f"cut {request.total - model.context_tokens:,} tokens (fewer turns, a shorter static prefix, less input per turn, or resend_history: false)"
    )


def _gpu_pin_infeasible(name, agent, spec, floor, measure, ceiling, fallback, misses: list[GpuOption]) -> str:
    """A pin that implies the gpu route, and no fleet that meets the corners: say which corner and which pin."""
    o = agent.overrides
    # only an open model can be pinned here (a Claude model with route gpu is invalid input)
    key, what = (
        ("model", f"{o.model} is pinned (self-hosted)") if o.model
        else ("route", "route 'gpu' is pinned") if o.route
        else ("instance_type", f"instance type {o.instance_type} is pinned (route gpu)")
    )
    where = spec.where("agents", name, "overrides", key)
    if fallback is None:
        return f"{where}: {name}: {what} but no Claude model meets quality floor tier {floor} to serve as the fleet's fallback; relax quality (lower quality.wrong_answer_cost) or unpin overrides.{key}"
    if misses:
        fastest = min(misses, key=lambda g: g.estimate.measured(measure))
        need = fastest.estimate.measured(measure)
        return (
            f"{where}: {name}: {what} but no fleet meets the {ceiling:g} s p95 {measure.replace('_', ' ')} ceiling "
            f"(fastest: {fastest.open_id} on {fastest.instance_type}, {need:.2f} s); relax latency: raise latency.p95_s from "
            f"{ceiling:g} to {math.ceil(need * 10) / 10} s, or unpin overrides.{key}"
        )
    return f"{where}: {name}: {what} but no open model and instance meet the quality floor (tier {floor}) with a Claude fallback; unpin overrides.{key} or relax quality"


def _context_note(agent: Agent, catalog: Catalog, excluded: list[tuple[str, int]]) -> str:
    cap = max(cm.max_output_tokens for cm in catalog.claude_models.values())
    request = planned_request(agent.profile, cap, catalog.assumptions.max_tokens_margin)
    models = ", ".join(f"{m} ({ctx:,})" for m, ctx in excluded)
    return f"excluded for their context windows: {models} cannot hold the largest request ({request.words()})"


def _gpu_options(agent, spec, catalog, fallback, launch_v, m12_v, measure, ceiling, route_pin, excluded) -> tuple[list[GpuOption], list[GpuOption]]:
    """Fleets that meet floor, context and ceiling, and those that missed only the ceiling.

    Open models meeting the floor whose context is too small are added to `excluded`.
    """
    if agent.latency.resolved_audience == "batch" and route_pin != "gpu":
        return [], []
    if fallback is None:
        return [], []
    pinned = agent.overrides.model
    options: list[GpuOption] = []
    misses: list[GpuOption] = []
    idle = catalog.assumptions.idle_minutes_default
    overhead = spec.stack.ops_overhead_usd_per_fleet_month
    margin = catalog.assumptions.max_tokens_margin
    for open_id, om in catalog.open_models.items():
        if pinned and pinned in catalog.open_models and open_id != pinned:
            continue
        if pinned and pinned in catalog.claude_models:
            continue
        if not judge(open_id, om, agent.quality).passes and open_id != pinned:
            continue
        if open_misfit(agent, om, margin):
            excluded.append((open_id, om.context_tokens))
            continue
        for itype, inst in catalog.gpu_instances.items():
            if agent.overrides.instance_type and itype != agent.overrides.instance_type:
                continue
            if not fits(om, inst):
                continue
            option = build_gpu_option(agent, open_id, om, itype, inst, fallback, catalog, launch_v, m12_v, overhead, idle)
            if measure != "none" and option.estimate.measured(measure) > (ceiling or math.inf):
                misses.append(option)
                continue
            options.append(option)
    return options, misses


def _infeasible(name, agent, spec, catalog, api_options, floor, measure, ceiling) -> str:
    where = spec.where("agents", name, "latency", "p95_s")
    parts = [f"{where}: {name}: no model meets quality floor tier {floor} ({agent.quality.task}, wrong answer {agent.quality.cost_level}) within the {ceiling} s p95 {measure.replace('_', ' ')} ceiling"]
    if api_options:
        fastest = min(api_options, key=lambda o: o.estimate.measured(measure))
        need = fastest.estimate.measured(measure)
        parts.append(f"relax latency: raise latency.p95_s from {ceiling} to {math.ceil(need * 10) / 10} s ({fastest.model_id}, +{need - (ceiling or 0):.1f} s)")
    # which tier would fit the ceiling?
    quick = [
        (m, cm) for m, cm in catalog.claude_models.items()
        if cm.selectable and (measure == "none" or _measured(cm, agent, measure) <= (ceiling or math.inf))
        and not claude_misfit(agent, cm, catalog.assumptions.max_tokens_margin)
    ]
    if quick:
        m, cm = max(quick, key=lambda x: x[1].quality_tier)
        parts.append(f"or relax quality: accept tier {cm.quality_tier} ({m}) instead of {floor} — lower quality.wrong_answer_cost, or add evals showing {m} passes")
    return "; ".join(parts)


def _measured(cm, agent, measure) -> float:
    from agentdeploy.planner.latency import api_estimate

    return api_estimate(cm, agent.profile).measured(measure)


def _over_budget(name, agent, spec, choice, api_options, batch_options, catalog) -> str:
    where = spec.where("agents", name, "budget_usd_per_month")
    cost = choice.launch.total
    msg = (
        f"{where}: {name}: the cheapest option meeting quality and latency ({_label(choice)}) costs ${cost:,.2f}/month at launch, "
        f"over the ${agent.budget_usd_per_month:,.2f} budget; relax cost: raise budget_usd_per_month by ${cost - agent.budget_usd_per_month:,.2f} to {math.ceil(cost)}"
    )
    cheaper = [
        (m, cm) for m, cm in catalog.claude_models.items()
        if cm.selectable and api_cost_at(agent, cm, OPTIONS[0], catalog, agent.volume.conversations_per_month, batch=False)[0].total <= agent.budget_usd_per_month
    ]
    if cheaper:
        m, cm = max(cheaper, key=lambda x: x[1].quality_tier)
        msg += f"; or relax quality to tier {cm.quality_tier} ({m}), which fits the budget"
    return msg


def _label(choice: ApiOption | GpuOption) -> str:
    if isinstance(choice, GpuOption):
        return f"{choice.open_id} on {choice.instance_type}"
    return f"{choice.model_id} via {choice.route}"


def _budget(agent: Agent, spec: Spec, choice: ApiOption | GpuOption) -> BudgetPlan:
    policy = agent.budget_policy or spec.stack.budget_policy
    if agent.budget_usd_per_month is not None:
        amount, user = agent.budget_usd_per_month, True
    else:
        amount, user = max(1.0, math.ceil(choice.launch.total * spec.stack.budget_headroom)), False
    return BudgetPlan(monthly_usd=round(amount, 2), thresholds_pct=list(spec.stack.budget_thresholds_pct), policy=policy, user_set=user)


def _agent_plan(name, agent, spec, catalog, choice, floor, verdicts, why, budget, launch_v, m12_v, measure, ceiling, audience, api_options, best_gpu) -> AgentPlan:
    assumptions = catalog.assumptions
    if isinstance(choice, GpuOption):
        api_ref = choice.fallback
        route, model_id, provider = "gpu", choice.open_model.hf_repo.split("/")[-1].lower(), "vllm"
        model_id = choice.open_id
        cap = min(choice.open_model.context_tokens, GPU_MAX_TOKENS)
        quality_tier = choice.open_model.task_tiers.get(agent.quality.task)
        estimate = choice.estimate
        # vLLM caches prefixes by itself; the plan's cache settings are for the Claude fallback.
        cache = _cache_decision(agent, api_ref)
        why.append(f"vLLM's automatic prefix caching covers the {agent.profile.static_prefix_tokens}-token static prefix on the fleet; the Claude fallback {api_ref.model_id} uses {_cache_words(api_ref)}")
        fleet = _fleet_plan(agent, choice, assumptions)
        why.append(
            f"fleet: {fleet.instance_type} ({fleet.gpu}), {fleet.on_demand_base_capacity} on-demand base + spot above it, "
            f"{fleet.min_replicas}-{fleet.max_replicas} replicas, scale to zero after {fleet.idle_minutes} idle minutes; "
            f"falls back to {api_ref.model_id} on errors, overload, cold start and spot loss"
        )
        api_monthly = MonthlyUSD(launch=round(api_ref.launch.total, 2), month_12=round(api_ref.month_12.total, 2))
        gpu_monthly = MonthlyUSD(launch=round(choice.launch.total, 2), month_12=round(choice.month_12.total, 2))
    else:
        api_ref = choice
        route, model_id, provider = choice.route, choice.model_id, "anthropic"
        cap = choice.model.max_output_tokens
        quality_tier = choice.model.quality_tier
        estimate = choice.estimate
        cache = _cache_decision(agent, choice)
        why.append(_cache_reason(agent, choice))
        fleet = None
        api_monthly = MonthlyUSD(launch=round(choice.launch.total, 2), month_12=round(choice.month_12.total, 2))
        gpu_monthly = MonthlyUSD(launch=round(best_gpu.launch.total, 2), month_12=round(best_gpu.month_12.total, 2)) if best_gpu else None

    verdict = verdicts.get(api_ref.model_id)
    why.insert(0, f"quality floor tier {floor} ({agent.quality.task}, wrong answer {agent.quality.cost_level})" + (f"; {verdict.reason}" if verdict else ""))
    if route != "batch" and measure != "none":
        why.insert(1, f"latency: p95 {measure.replace('_', ' ')} {estimate.measured(measure):.2f} s within the {ceiling:g} s ceiling")
    if route == "api":
        cheaper_skipped = [o for o in api_options if o.month_12.total < choice.month_12.total and o is not choice] if not isinstance(choice, GpuOption) else []
        for o in cheaper_skipped:
            why.append(f"{o.model_id} would be cheaper but its p95 {measure.replace('_', ' ')} {o.estimate.measured(measure):.2f} s misses the ceiling")
    streaming = audience == "interactive" and route != "batch"
    why.append("streaming on: a person reads the answer as it arrives" if streaming else "streaming off: nobody watches tokens arrive")
    max_tokens = max_tokens_for(agent.profile, cap, assumptions.max_tokens_margin)
    why.append(f"max_tokens {max_tokens}: p99 output {agent.profile.p99_output} x {assumptions.max_tokens_margin} margin")
    why.append(
        f"budget ${budget.monthly_usd:,.0f}/month ({'set by you' if budget.user_set else f'launch projection x {spec.stack.budget_headroom} headroom'}), alerts at {', '.join(f'{t}%' for t in budget.thresholds_pct)}, policy {budget.policy}"
    )

    per_conv = choice.launch.total / launch_v
    be = _break_even(agent, spec, catalog, choice if isinstance(choice, GpuOption) else best_gpu, api_ref)
    degrade = _degrade_model(agent, catalog, api_ref)
    latency = LatencyEstimate(
        ceiling_s=ceiling,
        measure=measure,
        p95_estimate_s=estimate.measured(measure) if measure != "none" else estimate.total_p95_s,
        ttft_p95_s=estimate.ttft_p95_s,
        total_p95_s=estimate.total_p95_s,
    )
    return AgentPlan(
        name=name,
        description=agent.description,
        route=route,
        model=model_id,
        provider=provider,
        fallback_model=api_ref.model_id if route == "gpu" else None,
        degrade_model=degrade,
        streaming=streaming,
        max_tokens=max_tokens,
        cache=cache,
        batch=route == "batch",
        latency=latency,
        quality=QualityDecision(
            task=agent.quality.task,
            wrong_answer_cost=agent.quality.cost_level,
            floor_tier=floor,
            source="evals" if agent.quality.evals else "tier-rules",
            model_tier=quality_tier,
        ),
        cost=CostEstimate(
            per_conversation_usd=round(per_conv, 6),
            monthly_usd=MonthlyUSD(launch=round(choice.launch.total, 2), month_12=round(choice.month_12.total, 2)),
            items={"launch": choice.launch, "month_12": choice.month_12},
            api_monthly_usd=api_monthly,
            gpu_monthly_usd=gpu_monthly,
        ),
        break_even_conversations_per_month=be,
        fleet=fleet,
        gpu_candidate=_candidate(choice if isinstance(choice, GpuOption) else best_gpu),
        budget=budget,
        volume={"launch": launch_v, "month_12": m12_v},
        why=why,
    )


def _cache_decision(agent: Agent, option: ApiOption) -> CacheDecision:
    return CacheDecision(
        enabled=option.cache.enabled,
        ttl=option.cache.ttl,
        breakpoints=option.cache.breakpoints,
        prefix_tokens=agent.profile.static_prefix_tokens,
        expected_hit_rate=round(option.bill.static_hit_rate, 4),
        min_cacheable_tokens=option.model.min_cacheable_tokens,
    )


def _candidate(option: GpuOption | None) -> str | None:
    return f"{option.open_id}@{option.instance_type}" if option else None


def _cache_words(option: ApiOption) -> str:
    if not option.cache.enabled:
        return "no prompt caching"
    return f"prompt caching ({option.cache.ttl} TTL)"


def _cache_reason(agent: Agent, choice: ApiOption) -> str:
    S = agent.profile.static_prefix_tokens
    minimum = choice.model.min_cacheable_tokens
    if choice.cache.enabled and choice.bill.cache_write == 0 and choice.bill.cache_read == 0:
        return f"prompt caching pinned to {choice.cache.ttl}, but no prefix reaches {choice.model_id}'s {minimum}-token minimum: nothing is cached"
    if choice.cache.enabled:
        where = " and the conversation so far" if choice.cache.conversation else ""
        return (
            f"prompt caching on: {S}-token static prefix{where} with {choice.cache.ttl} TTL, expected static hit rate "
            f"{choice.bill.static_hit_rate:.0%} (reads 0.1x, writes {choice.model.cache_write_1h_multiplier if choice.cache.ttl == '1h' else choice.model.cache_write_5m_multiplier}x)"
        )
    if S < minimum:
        return f"prompt caching off: the {S}-token static prefix is under {choice.model_id}'s {minimum}-token minimum"
    if agent.overrides.cache == "off":
        return "prompt caching off: pinned off in overrides"
    return "prompt caching off: requests sharing the prefix arrive too far apart for writes to pay back"


def _fleet_plan(agent: Agent, choice: GpuOption, assumptions) -> FleetPlan:
    shape_l, shape_m = choice.shape_launch, choice.shape_month_12
    peak = max(shape_l.peak_replicas, shape_m.peak_replicas)
    od_base = on_demand_base(agent)
    om = choice.open_model
    max_len = min(om.context_tokens, _context_need(agent, min(om.context_tokens, GPU_MAX_TOKENS), assumptions.max_tokens_margin))
    inst = choice.instance
    return FleetPlan(
        open_model=choice.open_id,
        hf_repo=om.hf_repo,
        served_model_name=choice.open_id,
        instance_type=choice.instance_type,
        instance_types=[choice.instance_type] + [t for t in inst.alternatives if t != choice.instance_type],
        gpu=inst.gpu,
        on_demand_base_capacity=od_base,
        on_demand_percentage_above_base=0,
        min_replicas=0,
        max_replicas=peak + 1,
        peak_replicas=shape_l.peak_replicas,
        average_replicas=shape_l.average_replicas,
        idle_minutes=assumptions.idle_minutes_default,
        active_hours_per_day=agent.volume.resolved_active_hours,
        max_concurrency_per_replica=shape_l.capacity_per_replica,
        target_queue_per_replica=round(max(1.0, shape_l.capacity_per_replica * 0.25), 2),
        max_model_len=max_len,
        cold_start_s=inst.cold_start_s,
        hourly_usd_on_demand=inst.on_demand_usd_per_hour,
        hourly_usd_spot=inst.spot_usd_per_hour,
    )


def _context_need(agent: Agent, cap: int, margin: float) -> int:
    """vLLM's max_model_len: the largest request with max_tokens, with room to spare (a power of two)."""
    p = agent.profile
    need = p.static_prefix_tokens + p.turns * (p.input_tokens_per_turn + p.output_tokens_per_turn) + p.p99_output
    need = max(need, planned_request(p, cap, margin).total)
    return max(2048, 1 << math.ceil(math.log2(need * 1.25)))


def _break_even(agent: Agent, spec: Spec, catalog: Catalog, gpu: GpuOption | None, api_ref: ApiOption) -> float | None:
    """Conversations/month where self-hosting the best qualifying open model costs what the API does."""
    if gpu is None or api_ref.route != "api":
        return None
    overhead = spec.stack.ops_overhead_usd_per_fleet_month
    idle = catalog.assumptions.idle_minutes_default

    def api_curve(v: float) -> float:
        return api_cost_at(agent, api_ref.model, api_ref.cache, catalog, v, batch=False)[0].total

    def gpu_curve(v: float) -> float:
        return gpu_cost_at(agent, gpu.instance, gpu.open_model, api_ref, catalog, v, overhead, idle)[0].total

    value = break_even(api_curve, gpu_curve)
    return None if value is None else round(value, 1)


def curve_cache(agent: Agent, catalog: Catalog, plan: AgentPlan):
    """The caching the API curve is priced with: the plan's own, or for a GPU plan the API
    reference's (the best API option at the plan's volumes)."""
    if plan.route == "gpu":
        api_model_id = plan.fallback_model or plan.model
        cm = catalog.claude_models[api_model_id]
        return best_api_option(agent, api_model_id, cm, catalog, plan.volume["launch"], plan.volume["month_12"], batch=False).cache
    from agentdeploy.planner.caching import CacheOption

    return CacheOption(plan.cache.ttl if plan.provider == "anthropic" else None, "conversation" in plan.cache.breakpoints)


def curves_for(agent: Agent, spec: Spec, catalog: Catalog, plan: AgentPlan):
    """(api_curve, gpu_curve or None) as functions of conversations/month, for charts and tests."""
    api_model_id = plan.fallback_model or plan.model
    cm = catalog.claude_models[api_model_id]
    cache = curve_cache(agent, catalog, plan)
    batch = plan.route == "batch"

    def api_curve(v: float) -> float:
        return api_cost_at(agent, cm, cache, catalog, v, batch=batch)[0].total

    if plan.gpu_candidate is None:
        return api_curve, None
    open_id, itype = plan.gpu_candidate.split("@")
    inst = catalog.gpu_instances[itype]
    om = catalog.open_models[open_id]
    fallback = best_api_option(agent, api_model_id, cm, catalog, plan.volume["launch"], plan.volume["month_12"], batch=False)

    def gpu_curve(v: float) -> float:
        return gpu_cost_at(agent, inst, om, fallback, catalog, v, spec.stack.ops_overhead_usd_per_fleet_month, catalog.assumptions.idle_minutes_default)[0].total

    return api_curve, gpu_curve


def _degrade_model(agent: Agent, catalog: Catalog, api_ref: ApiOption) -> str | None:
    """Cheapest other selectable Claude model still meeting the floor, if cheaper per token."""
    current = api_ref.model
    cheaper = [
        (m, cm) for m, cm in catalog.claude_models.items()
        if cm.selectable and m != api_ref.model_id and judge(m, cm, agent.quality).passes
        and cm.output_usd_per_mtok < current.output_usd_per_mtok
    ]
    return min(cheaper, key=lambda x: x[1].output_usd_per_mtok)[0] if cheaper else None


def baseline(spec: Spec, catalog: Catalog, totals: Totals, scale: float) -> Baseline:
    """Every agent on one mid tier, realtime, no caching, no batch."""
    selectable = sorted((cm.quality_tier, m) for m, cm in catalog.claude_models.items() if cm.selectable)
    mid_id = selectable[len(selectable) // 2][1]
    mid = catalog.claude_models[mid_id]
    launch = m12 = 0.0
    for agent in spec.agents.values():
        lv, mv = volumes(agent, scale)
        launch += api_cost_at(agent, mid, OPTIONS[0], catalog, lv, batch=False)[0].total
        m12 += api_cost_at(agent, mid, OPTIONS[0], catalog, mv, batch=False)[0].total
    saving = MonthlyUSD(launch=round(launch - totals.monthly_usd.launch, 2), month_12=round(m12 - totals.monthly_usd.month_12, 2))
    pct = MonthlyUSD(
        launch=round(100 * saving.launch / launch, 1) if launch else 0.0,
        month_12=round(100 * saving.month_12 / m12, 1) if m12 else 0.0,
    )
    return Baseline(model=mid_id, monthly_usd=MonthlyUSD(launch=round(launch, 2), month_12=round(m12, 2)), saving_usd=saving, saving_pct=pct)
