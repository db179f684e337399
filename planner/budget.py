"""The agent's budget, and how it splits between the gateway and AWS.

A self-hosted agent's spend has two meters: the gateway counts Claude tokens (the fallback's),
AWS bills the fleet's GPU hours. Each meter gets its share of the budget here, once, so the
gateway config and the stack's alarms copy the same numbers instead of each working them out
(they once disagreed: the alarms paced the whole budget against fallback-only spend).
"""

from __future__ import annotations

import math

from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.options import ApiOption, Choice, GpuOption
from agentdeploy.planner.plan import BudgetPlan, BudgetPolicy, CostItems, PaceAlarm
from agentdeploy.planner.quality import judge


def degrade_model(ctx: AgentContext, api_ref: ApiOption) -> str | None:
    """Cheapest other selectable Claude model still meeting the floor, if cheaper per token."""
    current = api_ref.model
    cheaper = [
        (m, cm) for m, cm in ctx.catalog.claude_models.items()
        if cm.selectable and m != api_ref.model_id and judge(m, cm, ctx.agent.quality).passes
        and cm.output_usd_per_mtok < current.output_usd_per_mtok
    ]
    return min(cheaper, key=lambda x: x[1].output_usd_per_mtok)[0] if cheaper else None


def budget_plan(ctx: AgentContext, choice: Choice, degrade_to: str | None) -> BudgetPlan:
    """The user's budget, or the launch projection x headroom; split by meter; paced per day."""
    agent, stack = ctx.agent, ctx.spec.stack
    policy = agent.budget_policy or stack.budget_policy
    if agent.budget_usd_per_month is not None:
        amount, user = agent.budget_usd_per_month, True
    else:
        amount, user = max(1.0, math.ceil(choice.launch.total * stack.budget_headroom)), False
    monthly = round(amount, 2)
    if isinstance(choice, GpuOption):
        gateway, aws = gpu_split(monthly, choice.launch)
    else:
        gateway, aws = monthly, 0.0
    thresholds = list(stack.budget_thresholds_pct)
    return BudgetPlan(
        monthly_usd=monthly,
        thresholds_pct=thresholds,
        policy=policy,
        user_set=user,
        gateway_usd=gateway,
        aws_usd=aws,
        gateway_policy=gateway_policy(policy, degrade_to),
        pace=pace(gateway, thresholds, ctx.catalog.assumptions.days_per_month),
    )


def gpu_split(monthly: float, launch: CostItems) -> tuple[float, float]:
    """(gateway, AWS) shares of a fleet's budget, in proportion to its launch cost items.

    The gateway meters token spend, which on a fleet is the Claude fallback's (at least $1: the
    gateway takes no zero budget); the fleet's GPU hours, spot and on-demand, are billed by AWS
    and watched by the stack's AWS Budget. The ops overhead is people's time: neither meter sees it.
    """
    total = launch.total
    fallback_share = launch.fallback_api / total if total else 0.0
    gpu_share = (launch.gpu_spot + launch.gpu_on_demand) / total if total else 0.0
    return round(max(1.0, monthly * fallback_share), 2), round(monthly * gpu_share, 2)


def gateway_policy(policy: BudgetPolicy, degrade_to: str | None) -> BudgetPolicy:
    """`degrade` needs a cheaper model to degrade to; without one the gateway blocks instead."""
    return policy if (policy != "degrade" or degrade_to) else "block"


def pace(gateway_usd: float, thresholds_pct: list[int], days_per_month: float) -> list[PaceAlarm]:
    """One daily-spend alarm per threshold: the day's spend that reaches pct% of the budget in a month."""
    return [PaceAlarm(pct=pct, daily_usd=round(gateway_usd * pct / 100 / days_per_month, 4)) for pct in thresholds_pct]
