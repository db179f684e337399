"""Monthly cost as a function of volume: the API line, the fleet's steps, where they cross.

The plan prices two volumes (launch, 12 months); these curves price any volume the same way, for
the break-even figure, `deploy plan --chart` and the invariant tests. The naive baseline the
plan is compared with is priced here too.
"""

from __future__ import annotations

from agentdeploy.planner.agent_context import AgentContext, ops_overhead, volumes
from agentdeploy.planner.breakeven import Curve, break_even
from agentdeploy.planner.caching import OPTIONS, CacheOption
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.options import (
    ApiOption,
    GpuOption,
    api_cost_at,
    best_api_option,
    fleet_month_floor,
    gpu_cost_at,
    gpu_month_total,
)
from agentdeploy.planner.plan import AgentPlan, Baseline, MonthlyUSD, Totals
from agentdeploy.planner.quality import judge
from agentdeploy.planner.spec import AgentDecision, Spec


def break_even_volume(ctx: AgentContext, gpu: GpuOption | None, api_ref: ApiOption) -> float | None:
    """Conversations/month where self-hosting the best qualifying open model costs what the API does."""
    if gpu is None or api_ref.route != "api":
        return None
    api_pricer = ctx.pricers.api(api_ref.model, api_ref.cache, batch=False)
    api_curve = api_pricer.total  # remembers each volume's total

    same = gpu.fallback.model_id == api_ref.model_id and gpu.fallback.cache == api_ref.cache

    def gpu_curve(v: float) -> float:
        # the fleet's fallback is the API reference itself: its bill at v is the API curve's
        fallback_usd = api_curve(v) if same else None
        return gpu_month_total(ctx, gpu.open_model, gpu.instance, gpu.fallback, v, fallback_usd)

    value = break_even(api_curve, gpu_curve, gpu_floor=fleet_month_floor(ctx, gpu.instance), api_rate=api_pricer.max_per_conversation)
    return None if value is None else round(value, 1)


def curve_cache(agent: AgentDecision, catalog: Catalog, plan: AgentPlan) -> CacheOption:
    """The caching the API curve is priced with: the plan's own, or for a GPU plan the API
    reference's (the best API option at the plan's volumes)."""
    if plan.route == "gpu":
        api_model_id = plan.fallback_model or plan.model
        cm = catalog.claude_models[api_model_id]
        return best_api_option(agent, api_model_id, cm, catalog, plan.volume["launch"], plan.volume["month_12"], batch=False).cache
    return CacheOption(plan.cache.ttl if plan.provider == "anthropic" else None, "conversation" in plan.cache.breakpoints)


def curves_for(agent: AgentDecision, spec: Spec, catalog: Catalog, plan: AgentPlan) -> tuple[Curve, Curve | None]:
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
        return gpu_cost_at(agent, inst, om, fallback, catalog, v, ops_overhead(spec, catalog), catalog.assumptions.idle_minutes_default)[0].total

    return api_curve, gpu_curve


def baseline_model(agent: AgentDecision, catalog: Catalog, mid_id: str) -> str:
    """The mid tier where it meets the agent's floor; else the lowest selectable tier that does."""
    if judge(mid_id, catalog.claude_models[mid_id], agent.quality).passes:
        return mid_id
    passing = sorted(
        (cm.quality_tier, cm.output_usd_per_mtok, m) for m, cm in catalog.claude_models.items()
        if cm.selectable and judge(m, cm, agent.quality).passes
    )
    return passing[0][2] if passing else mid_id


def baseline(spec: Spec, catalog: Catalog, totals: Totals, scale: float, infrastructure_usd: float = 0.0) -> Baseline:
    """Every agent on one mid tier (a higher one where its floor needs it), realtime, no caching,
    no batch, clients calling Claude directly: only the spend alarms as fixed cost."""
    selectable = sorted((cm.quality_tier, m) for m, cm in catalog.claude_models.items() if cm.selectable)
    mid_id = selectable[len(selectable) // 2][1]
    launch = m12 = infrastructure_usd
    models: dict[str, str] = {}
    for name, agent in spec.agents.items():
        model_id = baseline_model(agent, catalog, mid_id)
        if model_id != mid_id:
            models[name] = model_id
        model = catalog.claude_models[model_id]
        lv, mv = volumes(agent, scale)
        launch += api_cost_at(agent, model, OPTIONS[0], catalog, lv, batch=False)[0].total
        m12 += api_cost_at(agent, model, OPTIONS[0], catalog, mv, batch=False)[0].total
    saving = MonthlyUSD(launch=round(launch - totals.monthly_usd.launch, 2), month_12=round(m12 - totals.monthly_usd.month_12, 2))
    pct = MonthlyUSD(
        launch=round(100 * saving.launch / launch, 1) if launch else 0.0,
        month_12=round(100 * saving.month_12 / m12, 1) if m12 else 0.0,
    )
    return Baseline(model=mid_id, models=models, monthly_usd=MonthlyUSD(launch=round(launch, 2), month_12=round(m12, 2)),
                    saving_usd=saving, saving_pct=pct, infrastructure_usd=infrastructure_usd)
