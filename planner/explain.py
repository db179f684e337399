"""Why-lines: one sentence per decision, in the plan's `why` list and the PR comment.

A reviewer reads these instead of the planner's code, so each names the figure that decided
(a price, a p95, a hit rate) and, for a pinned decision, that it was pinned rather than chosen.
The route choice in build.py and the plan record in record.py call these in the order the
lines are shown.
"""

from __future__ import annotations

from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.context import planned_request
from agentdeploy.planner.latency import BATCH_P95_S, Estimate
from agentdeploy.planner.options import ApiOption, Choice, GpuOption
from agentdeploy.planner.plan import BudgetPlan, FleetPlan
from agentdeploy.planner.quality import Verdict
from agentdeploy.planner.spec import AgentDecision, Measure


def pin_reasons(agent: AgentDecision, catalog: Catalog) -> list[str]:
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


def label(choice: Choice) -> str:
    if isinstance(choice, GpuOption):
        return f"{choice.open_id} on {choice.instance_type}"
    return f"{choice.model_id} via {choice.route}"


def _measure_words(measure: Measure) -> str:
    return measure.replace("_", " ")


# --- route choice ------------------------------------------------------------------------------


def batch_ruled_out_by_cache_pin() -> str:
    return "route api, not batch: the pinned 5m cache TTL rules out the Batch API, which uses the 1 h TTL"


def batch_may_overrun(ceiling: float) -> str:
    return f"batch results usually arrive within {BATCH_P95_S / 3600:.0f} h but may take up to 24 h, beyond the {ceiling:.0f} s ceiling in rare cases"


def context_note(ctx: AgentContext, excluded: list[tuple[str, int]]) -> str:
    """The models left out because the largest request does not fit their context window."""
    cap = max(cm.max_output_tokens for cm in ctx.catalog.claude_models.values())
    request = planned_request(ctx.agent.profile, cap, ctx.margin)
    models = ", ".join(f"{m} ({window:,})" for m, window in excluded)
    return f"excluded for their context windows: {models} cannot hold the largest request ({request.words()})"


def slow_fallback(ctx: AgentContext, fallback: ApiOption) -> str:
    return (
        f"no Claude model meets the {ctx.ceiling:g} s ceiling: while falling back, {fallback.model_id} answers in "
        f"~{fallback.estimate.measured(ctx.measure):.1f} s p95"
    )


def batch_chosen(ctx: AgentContext, choice: ApiOption) -> str:
    return f"route batch: nobody waits for {ctx.name}, and the Batch API takes {choice.model.batch_discount:.0%} off input and output"


def only_gpu_fast_enough(choice: GpuOption) -> str:
    return f"route gpu: only a self-hosted {choice.open_id} on {choice.instance_type} meets the latency ceiling"


def gpu_cheaper(gpu: GpuOption, api: ApiOption) -> str:
    return (
        f"route gpu: {gpu.open_id} on {gpu.instance_type} costs ${gpu.year_usd:,.0f} over the year's ramp vs ${api.year_usd:,.0f} "
        f"on {api.model_id} (${gpu.month_12.total:,.0f} vs ${api.month_12.total:,.0f} a month at 12-month volume)"
    )


def api_cheaper(gpu: GpuOption, api: ApiOption) -> str:
    return (
        f"route api: self-hosting {gpu.open_id} on {gpu.instance_type} would cost ${gpu.year_usd:,.0f} over the year's ramp "
        f"vs ${api.year_usd:,.0f} on the API (${gpu.month_12.total:,.0f} vs ${api.month_12.total:,.0f} a month at 12-month volume)"
    )


def switch_line(api: ApiOption, gpu: GpuOption, month: int, conversations: float, saved_usd: float) -> str:
    return (
        f"stay on {api.model_id} until about {conversations:,.0f} conversations a month (month {month} of the ramp), "
        f"then move to a fleet ({gpu.open_id} on {gpu.instance_type}): the move saves ${saved_usd:,.0f} in the first year"
    )


def ops_line(ctx: AgentContext, gpu: GpuOption) -> str:
    source = "the catalog's default, ~4 engineer-hours a month" if ctx.ops_overhead_is_default else "set in stack.ops_overhead_usd_per_fleet_month"
    return f"ops overhead ${gpu.month_12.ops_overhead:,.0f} per fleet-month counted on the GPU side ({source})"


# --- the plan's settings -----------------------------------------------------------------------


def quality_line(ctx: AgentContext, verdict: Verdict | None) -> str:
    q = ctx.agent.quality
    return f"quality floor tier {ctx.floor} ({q.task}, wrong answer {q.cost_level})" + (f"; {verdict.reason}" if verdict else "")


def latency_line(ctx: AgentContext, estimate: Estimate) -> str:
    return f"latency: p95 {_measure_words(ctx.measure)} {estimate.measured(ctx.measure):.2f} s within the {ctx.ceiling:g} s ceiling"


def missed_ceiling(ctx: AgentContext, option: ApiOption) -> str:
    return f"{option.model_id} would be cheaper but its p95 {_measure_words(ctx.measure)} {option.estimate.measured(ctx.measure):.2f} s misses the ceiling"


def cache_words(option: ApiOption) -> str:
    if not option.cache.enabled:
        return "no prompt caching"
    return f"prompt caching ({option.cache.ttl} TTL)"


def cache_reason(agent: AgentDecision, choice: ApiOption) -> str:
    S = agent.profile.static_prefix_tokens
    minimum = choice.model.min_cacheable_tokens
    bill = choice.launch_bill or choice.bill
    if choice.cache.enabled and choice.bill.cache_write == 0 and choice.bill.cache_read == 0:
        return f"prompt caching pinned to {choice.cache.ttl}, but no prefix reaches {choice.model_id}'s {minimum}-token minimum: nothing is cached"
    if choice.cache.enabled:
        where = " and the conversation so far" if choice.cache.conversation else ""
        conv = f", conversation breakpoint {bill.conversation_hit_rate:.0%} of later turns" if choice.cache.conversation else ""
        return (
            f"prompt caching on: {S}-token static prefix{where} with {choice.cache.ttl} TTL; launch month's expected hit rate: "
            f"static prefix {bill.static_hit_rate:.0%} of requests{conv} (reads 0.1x, writes {_write_multiplier(choice)}x)"
        )
    if S < minimum:
        return f"prompt caching off: the {S}-token static prefix is under {choice.model_id}'s {minimum}-token minimum"
    if agent.overrides.cache == "off":
        return "prompt caching off: pinned off in overrides"
    if choice.route == "batch":
        return "prompt caching off: the daily batch is too small for reads to pay back the writes of the requests that run before any entry exists"
    return "prompt caching off: requests sharing the prefix arrive too far apart for writes to pay back"


def _write_multiplier(choice: ApiOption) -> float:
    m = choice.model
    return m.cache_write_1h_multiplier if choice.cache.ttl == "1h" else m.cache_write_5m_multiplier


def fleet_cache(agent: AgentDecision, fallback: ApiOption) -> str:
    return (
        f"vLLM's automatic prefix caching covers the {agent.profile.static_prefix_tokens}-token static prefix on the fleet; "
        f"the Claude fallback {fallback.model_id} uses {cache_words(fallback)}"
    )


def fleet_line(fleet: FleetPlan, fallback: ApiOption) -> str:
    return (
        f"fleet: {fleet.instance_type} ({fleet.gpu}), {fleet.on_demand_base_capacity} on-demand base + spot above it, "
        f"{fleet.min_replicas}-{fleet.max_replicas} replicas, scale to zero after {fleet.idle_minutes} idle minutes; "
        f"falls back to {fallback.model_id} on errors, overload, cold start and spot loss"
    )


def streaming_line(streaming: bool) -> str:
    return "streaming on: a person reads the answer as it arrives" if streaming else "streaming off: nobody watches tokens arrive"


def max_tokens_line(ctx: AgentContext, max_tokens: int) -> str:
    return f"max_tokens {max_tokens}: p99 output {ctx.agent.profile.p99_output} x {ctx.margin} margin"


def budget_line(ctx: AgentContext, budget: BudgetPlan) -> str:
    source = "set by you" if budget.user_set else f"launch projection x {ctx.spec.stack.budget_headroom} headroom"
    alerts = ", ".join(f"{t}%" for t in budget.thresholds_pct)
    return f"budget ${budget.monthly_usd:,.0f}/month ({source}), alerts at {alerts}, policy {budget.policy}"


def budget_line_with_share(headroom: float, budget: BudgetPlan, share_usd: float) -> str:
    source = "set by you" if budget.user_set else f"launch projection and ${share_usd:,.2f} share of the stack's fixed cost x {headroom} headroom"
    alerts = ", ".join(f"{t}%" for t in budget.thresholds_pct)
    return (
        f"budget ${budget.monthly_usd:,.0f}/month ({source}): ${budget.gateway_usd:,.2f} Claude spend (policy {budget.gateway_policy}), "
        f"${budget.aws_usd:,.2f} AWS-billed; alerts at {alerts}, policy {budget.policy}"
    )
