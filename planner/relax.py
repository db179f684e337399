"""What to change when there is no plan: the corner to relax, or the pins to drop.

Two kinds of answer. Overrides that name unknown things or contradict each other are invalid
input (`check_references` raises for the whole file). An agent whose corners cannot all be met
gets one line: the field to change (`file:line`), by how much, and the alternative corner
(a lower quality tier that fits, a bigger budget). build.py collects those lines into one
`Infeasible` error.
"""

from __future__ import annotations

import math

from agentdeploy.errors import InvalidInput
from agentdeploy.planner.agent_context import AgentContext, effective_route
from agentdeploy.planner.caching import OPTIONS
from agentdeploy.planner.catalog import Catalog, ClaudeModel
from agentdeploy.planner.context import claude_misfit, planned_request
from agentdeploy.planner.explain import label
from agentdeploy.planner.fleet import fits
from agentdeploy.planner.latency import BATCH_P95_S, api_estimate
from agentdeploy.planner.options import ApiOption, Choice, GpuOption, api_cost_at
from agentdeploy.planner.spec import AgentDecision, Measure, Spec

# --- overrides that cannot be planned as written -----------------------------------------------


def check_references(spec: Spec, catalog: Catalog) -> None:
    """Raise `InvalidInput` listing every override that names what the catalog lacks or contradicts another."""
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
        details += pin_conflicts(name, agent, spec, catalog)
    if details:
        raise InvalidInput(f"{spec.source_path or 'decision file'}: overrides name things the catalog lacks or contradict each other", details=details)


def pin_conflicts(name: str, agent: AgentDecision, spec: Spec, catalog: Catalog) -> list[str]:
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


# --- pins the agent's corners rule out ---------------------------------------------------------


def pinned_misfit(ctx: AgentContext, reason: str) -> str:
    """The pinned model cannot take the agent's largest request."""
    return (
        f"{ctx.where('overrides', 'model')}: {ctx.name}: pinned {ctx.pinned}: {reason}; "
        "relax the profile (fewer turns, a shorter static prefix, less input per turn, or resend_history: false) or unpin the model"
    )


def batch_pin_too_fast(ctx: AgentContext) -> str:
    """Route batch is pinned, but the ceiling wants an answer within the hour."""
    return (
        f"{ctx.where('overrides', 'route')}: {ctx.name}: route 'batch' is pinned but the latency ceiling ({ctx.ceiling} s) is under an hour; "
        f"raise latency.p95_s to at least {BATCH_P95_S:.0f} or unpin the route"
    )


def gpu_pin_infeasible(ctx: AgentContext, fallback: ApiOption | None, misses: list[GpuOption]) -> str:
    """A pin that implies the gpu route, and no fleet that meets the corners: say which corner and which pin."""
    o = ctx.agent.overrides
    # only an open model can be pinned here (a Claude model with route gpu is invalid input)
    key, what = (
        ("model", f"{o.model} is pinned (self-hosted)") if o.model
        else ("route", "route 'gpu' is pinned") if o.route
        else ("instance_type", f"instance type {o.instance_type} is pinned (route gpu)")
    )
    where = ctx.where("overrides", key)
    if fallback is None:
        return f"{where}: {ctx.name}: {what} but no Claude model meets quality floor tier {ctx.floor} to serve as the fleet's fallback; relax quality (lower quality.wrong_answer_cost) or unpin overrides.{key}"
    if misses:
        measure = ctx.measure
        fastest = min(misses, key=lambda g: g.estimate.measured(measure))
        need = fastest.estimate.measured(measure)
        return (
            f"{where}: {ctx.name}: {what} but no fleet meets the {ctx.ceiling:g} s p95 {measure.replace('_', ' ')} ceiling "
            f"(fastest: {fastest.open_id} on {fastest.instance_type}, {need:.2f} s); relax latency: raise latency.p95_s from "
            f"{ctx.ceiling:g} to {math.ceil(need * 10) / 10} s, or unpin overrides.{key}"
        )
    return f"{where}: {ctx.name}: {what} but no open model and instance meet the quality floor (tier {ctx.floor}) with a Claude fallback; unpin overrides.{key} or relax quality"


# --- corners that cannot all be met ------------------------------------------------------------


def context_infeasible(ctx: AgentContext, candidates: list[str]) -> str:
    """Every model meeting the floor has too small a context: name the largest, and by how much to shrink."""
    catalog = ctx.catalog
    best = max(candidates, key=lambda m: catalog.claude_models[m].context_tokens)
    model = catalog.claude_models[best]
    request = planned_request(ctx.agent.profile, model.max_output_tokens, ctx.margin)
    return (
        f"{ctx.where('profile')}: {ctx.name}: the largest request ({request.words()}) fits the context of no model "
        f"meeting quality floor tier {ctx.floor} (largest: {best}, {model.context_tokens:,} tokens); relax the profile: "
        f"cut {request.total - model.context_tokens:,} tokens (fewer turns, a shorter static prefix, less input per turn, or resend_history: false)"
    )


def infeasible(ctx: AgentContext, api_options: list[ApiOption]) -> str:
    """No model meets floor and ceiling: how far to raise the ceiling, or which tier would fit it."""
    agent, measure, ceiling = ctx.agent, ctx.measure, ctx.ceiling
    parts = [
        f"{ctx.where('latency', 'p95_s')}: {ctx.name}: no model meets quality floor tier {ctx.floor} ({agent.quality.task}, "
        f"wrong answer {agent.quality.cost_level}) within the {ceiling} s p95 {measure.replace('_', ' ')} ceiling"
    ]
    if api_options:
        fastest = min(api_options, key=lambda o: o.estimate.measured(measure))
        need = fastest.estimate.measured(measure)
        parts.append(f"relax latency: raise latency.p95_s from {ceiling} to {math.ceil(need * 10) / 10} s ({fastest.model_id}, +{need - (ceiling or 0):.1f} s)")
    # which tier would fit the ceiling?
    quick = [
        (m, cm) for m, cm in ctx.catalog.claude_models.items()
        if cm.selectable and (measure == "none" or _measured(cm, agent, measure) <= (ceiling or math.inf))
        and not claude_misfit(agent, cm, ctx.margin)
    ]
    if quick:
        m, cm = max(quick, key=lambda x: x[1].quality_tier)
        parts.append(f"or relax quality: accept tier {cm.quality_tier} ({m}) instead of {ctx.floor} — lower quality.wrong_answer_cost, or add evals showing {m} passes")
    return "; ".join(parts)


def _measured(cm: ClaudeModel, agent: AgentDecision, measure: Measure) -> float:
    return api_estimate(cm, agent.profile).measured(measure)


def over_budget(ctx: AgentContext, choice: Choice, budget_usd: float) -> str:
    """The cheapest option meeting quality and latency costs more than the budget: by how much, and which tier fits."""
    cost = choice.launch.total
    msg = (
        f"{ctx.where('budget_usd_per_month')}: {ctx.name}: the cheapest option meeting quality and latency ({label(choice)}) costs ${cost:,.2f}/month at launch, "
        f"over the ${budget_usd:,.2f} budget; relax cost: raise budget_usd_per_month by ${cost - budget_usd:,.2f} to {math.ceil(cost)}"
    )
    agent, catalog = ctx.agent, ctx.catalog
    cheaper = [
        (m, cm) for m, cm in catalog.claude_models.items()
        if cm.selectable and api_cost_at(agent, cm, OPTIONS[0], catalog, agent.volume.conversations_per_month, batch=False)[0].total <= budget_usd
    ]
    if cheaper:
        m, cm = max(cheaper, key=lambda x: x[1].quality_tier)
        msg += f"; or relax quality to tier {cm.quality_tier} ({m}), which fits the budget"
    return msg
