"""The plan record of one agent: its chosen option written out as an `AgentPlan`.

build.py decides the route and the option; this fills in everything that follows from that
choice (the fleet's shape, the cache settings, max_tokens, streaming, the budget and its split,
the first-token budget of a self-hosted attempt, the break-even volume) and finishes the
why-lines, so every later stage copies these values instead of working them out again.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.planner import explain
from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.budget import budget_plan, degrade_model
from agentdeploy.planner.catalog import Assumptions, Catalog
from agentdeploy.planner.context import GPU_MAX_TOKENS, context_need, max_tokens_for
from agentdeploy.planner.curves import break_even_volume
from agentdeploy.planner.families import spread
from agentdeploy.planner.fleet import on_demand_base
from agentdeploy.planner.latency import self_hosted_ttft
from agentdeploy.planner.options import ApiOption, Choice, GpuOption, hits_at, ramp_volumes
from agentdeploy.planner.plan import (
    AgentPlan,
    CacheDecision,
    CostEstimate,
    FleetPlan,
    LatencyEstimate,
    MonthlyUSD,
    QualityDecision,
    SwitchPlan,
)
from agentdeploy.planner.quality import Verdict
from agentdeploy.planner.ramp import best_switch
from agentdeploy.planner.spec import AgentDecision


@dataclass(frozen=True)
class Alternatives:
    """What the choice was compared with: the realtime API options and the cheapest fleet."""

    api_options: list[ApiOption]
    best_gpu: GpuOption | None
    #: Quality verdicts of the Claude models considered, by model id.
    verdicts: dict[str, Verdict]


def agent_plan(ctx: AgentContext, choice: Choice, alternatives: Alternatives, why: list[str]) -> AgentPlan:
    """The `AgentPlan` for `choice`; `why` holds the route choice's lines and is completed here."""
    agent, assumptions = ctx.agent, ctx.catalog.assumptions
    best_gpu = alternatives.best_gpu
    fleet: FleetPlan | None
    gpu_monthly: MonthlyUSD | None
    if isinstance(choice, GpuOption):
        api_ref = choice.fallback
        cap = min(choice.open_model.context_tokens, GPU_MAX_TOKENS)
        quality_tier = choice.open_model.task_tiers.get(agent.quality.task)
        # vLLM caches prefixes by itself; the plan's cache settings are for the Claude fallback.
        why.append(explain.fleet_cache(agent, api_ref))
        types = spread(ctx.catalog, choice.open_model, choice.instance_type)
        fleet = fleet_plan(agent, choice, assumptions, types.types)
        why.append(explain.fleet_line(fleet, api_ref))
        why.append(types.reason)
        why.append(explain.ops_line(ctx, choice))
        gpu_monthly = _monthly(choice)
    else:
        api_ref = choice
        cap = choice.model.max_output_tokens
        quality_tier = choice.model.quality_tier
        why.append(explain.cache_reason(agent, choice))
        fleet = None
        gpu_monthly = _monthly(best_gpu) if best_gpu else None
    route = "gpu" if isinstance(choice, GpuOption) else choice.route
    estimate = choice.estimate

    why.insert(0, explain.quality_line(ctx, alternatives.verdicts.get(api_ref.model_id)))
    if route != "batch" and ctx.measure != "none":
        why.insert(1, explain.latency_line(ctx, estimate))
    if route == "api":
        why += [explain.missed_ceiling(ctx, o) for o in alternatives.api_options if o.totals[1] < choice.month_12.total and o is not choice]
    streaming = ctx.audience == "interactive" and route != "batch"
    why.append(explain.streaming_line(streaming))
    max_tokens = max_tokens_for(agent.profile, cap, assumptions.max_tokens_margin)
    why.append(explain.max_tokens_line(ctx, max_tokens))
    degrade = degrade_model(ctx, api_ref)
    budget = budget_plan(ctx, choice, degrade)
    why.append(explain.budget_line(ctx, budget))

    gpu_for_curves = choice if isinstance(choice, GpuOption) else best_gpu
    break_even = break_even_volume(ctx, gpu_for_curves, api_ref)
    switch = None
    if isinstance(choice, ApiOption) and choice.route == "api" and best_gpu is not None and (found := best_switch(choice, best_gpu)):
        at = break_even or ramp_volumes(agent, ctx.launch_v, ctx.m12_v)[found.month - 1]
        switch = SwitchPlan(month=found.month, conversations_per_month=round(at, 1), to=f"{best_gpu.open_id}@{best_gpu.instance_type}",
                            year_usd_saved=round(found.saved_usd, 2))
        why.append(explain.switch_line(choice, best_gpu, found.month, at, found.saved_usd))
        why.append(explain.ops_line(ctx, best_gpu))
    return AgentPlan(
        name=ctx.name,
        description=agent.description,
        route=route,
        model=choice.open_id if isinstance(choice, GpuOption) else choice.model_id,
        provider="vllm" if isinstance(choice, GpuOption) else "anthropic",
        fallback_model=api_ref.model_id if route == "gpu" else None,
        degrade_model=degrade,
        streaming=streaming,
        max_tokens=max_tokens,
        cache=cache_decision(agent, api_ref, ctx.catalog, ctx.launch_v),
        batch=route == "batch",
        latency=LatencyEstimate(
            ceiling_s=ctx.ceiling,
            measure=ctx.measure,
            p95_estimate_s=estimate.measured(ctx.measure) if ctx.measure != "none" else estimate.total_p95_s,
            ttft_p95_s=estimate.ttft_p95_s,
            total_p95_s=estimate.total_p95_s,
            self_hosted_ttft_s=self_hosted_ttft(ctx.ceiling, ctx.measure, api_ref.estimate.ttft_p95_s) if route == "gpu" else None,
        ),
        quality=QualityDecision(
            task=agent.quality.task,
            wrong_answer_cost=agent.quality.cost_level,
            floor_tier=ctx.floor,
            source="evals" if agent.quality.evals else "tier-rules",
            model_tier=quality_tier,
        ),
        cost=CostEstimate(
            per_conversation_usd=round(choice.launch.total / ctx.launch_v, 6),
            monthly_usd=_monthly(choice),
            items={"launch": choice.launch.items(), "month_12": choice.month_12.items()},
            api_monthly_usd=_monthly(api_ref),
            gpu_monthly_usd=gpu_monthly,
            months_usd=[round(m, 2) for m in choice.months],
            year_usd=round(choice.year_usd, 2),
        ),
        break_even_conversations_per_month=break_even,
        fleet=fleet,
        gpu_candidate=f"{gpu_for_curves.open_id}@{gpu_for_curves.instance_type}" if gpu_for_curves else None,
        switch=switch,
        budget=budget,
        volume={"launch": ctx.launch_v, "month_12": ctx.m12_v},
        why=why,
    )


def _monthly(option: Choice) -> MonthlyUSD:
    return MonthlyUSD(launch=round(option.launch.total, 2), month_12=round(option.month_12.total, 2))


def cache_decision(agent: AgentDecision, option: ApiOption, ctx_catalog: Catalog, launch_v: float) -> CacheDecision:
    """The Claude model's cache settings (on route gpu, the fallback's: vLLM caches by itself)."""
    bill = option.launch_bill or option.bill
    return CacheDecision(
        enabled=option.cache.enabled,
        ttl=option.cache.ttl,
        breakpoints=option.cache.breakpoints,
        prefix_tokens=agent.profile.static_prefix_tokens,
        expected_hit_rate=round(bill.static_hit_rate, 4),
        first_turn_hit_rate=round(hits_at(agent, option.cache, ctx_catalog, launch_v, batch=option.route == "batch").first, 4) if option.cache.enabled else 0.0,
        conversation_hit_rate=round(bill.conversation_hit_rate, 4),
        min_cacheable_tokens=option.model.min_cacheable_tokens,
    )


def fleet_plan(agent: AgentDecision, choice: GpuOption, assumptions: Assumptions, instance_types: list[str]) -> FleetPlan:
    """The fleet the Pulumi program and node templates build: sized for the busier month."""
    shape_l, shape_m = choice.shape_launch, choice.shape_month_12
    peak = max(shape_l.peak_replicas, shape_m.peak_replicas)
    om = choice.open_model
    max_len = min(om.context_tokens, context_need(agent, min(om.context_tokens, GPU_MAX_TOKENS), assumptions.max_tokens_margin))
    inst = choice.instance
    return FleetPlan(
        open_model=choice.open_id,
        hf_repo=om.hf_repo,
        served_model_name=choice.open_id,
        instance_type=choice.instance_type,
        instance_types=instance_types,
        gpu=inst.gpu,
        on_demand_base_capacity=on_demand_base(agent),
        on_demand_percentage_above_base=0,
        min_replicas=0,
        max_replicas=peak + 1,
        peak_replicas=shape_l.peak_replicas,
        average_replicas=shape_l.average_replicas,
        idle_minutes=assumptions.idle_minutes_default,
        active_hours_per_day=agent.volume.resolved_active_hours,
        max_concurrency_per_replica=shape_l.capacity_per_replica,
        target_queue_per_replica=shape_l.target_in_flight,
        tensor_parallel_size=inst.gpu_count,
        max_model_len=max_len,
        cold_start_s=inst.cold_start_s,
        hourly_usd_on_demand=inst.on_demand_usd_per_hour,
        hourly_usd_spot=inst.spot_usd_per_hour,
    )
