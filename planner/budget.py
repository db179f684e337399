"""The agent's budget, and how it splits between the gateway and AWS.

A self-hosted agent's spend has two meters: the gateway counts Claude tokens (the fallback's),
AWS bills the fleet's GPU hours. Each meter gets its share of the budget here, once, so the
gateway config and the stack's alarms copy the same numbers instead of each working them out
(they once disagreed: the alarms paced the whole budget against fallback-only spend).
"""

from __future__ import annotations

import math

from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.cost import MonthCost
from agentdeploy.planner.options import ApiOption, Choice, GpuOption
from agentdeploy.planner.plan import AgentPlan, BudgetPlan, BudgetPolicy, PaceAlarm
from agentdeploy.planner.quality import judge
from agentdeploy.planner.spec import StackSettings


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


def gpu_split(monthly: float, launch: MonthCost) -> tuple[float, float]:
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


def with_infrastructure(plan: AgentPlan, share_usd: float, stack: StackSettings, days_per_month: float) -> BudgetPlan:
    """The agent's budget once its share of the stack's fixed cost is known.

    The share is AWS-billed (NAT, load balancers, tasks, alarms): it goes to `aws_usd`, so the
    stack's AWS Budget covers what AWS bills and nothing the gateway meters. A derived budget
    grows by the share x headroom; a budget the user set is split, not grown.
    """
    b, launch = plan.budget, plan.cost.items["launch"]
    claude = launch.total - launch.gpu_spot - launch.gpu_on_demand - launch.ops_overhead
    aws = launch.gpu_spot + launch.gpu_on_demand + share_usd
    monthly = b.monthly_usd if b.user_set else float(max(1.0, math.ceil((launch.total + share_usd) * stack.budget_headroom)))
    metered = claude + aws
    gateway = round(max(1.0, monthly * claude / metered), 2) if metered else round(monthly, 2)
    aws_usd = round(monthly * aws / metered, 2) if metered else 0.0
    return b.model_copy(update={"monthly_usd": round(monthly, 2), "gateway_usd": gateway, "aws_usd": aws_usd,
                                "pace": pace(gateway, b.thresholds_pct, days_per_month)})
