"""Budget alarms: one SNS topic with the stack's alert emails, an AWS Budget on the stack's
tagged spend (and, opted in, the activation of that cost-allocation tag), and per-agent
CloudWatch alarms on the spend the gateway publishes.

AWS only sees the stack's own infrastructure (GPU fleets, gateway); Claude spend is billed
by Anthropic, so the per-agent alarms read the gateway's SpendUSD metric instead. Each watches
its own share of the budgets as the plan split them (`BudgetPlan.aws_usd` and `gateway_usd`,
the latter paced per day in `BudgetPlan.pace`); both fire at the plan's thresholds. Nothing is
worked out here: the gateway's config enforces the same shares.

A gateway-less stack has no gateway to publish SpendUSD. `deploy spend publish` reads each
agent's spend from the Usage and Cost API instead and publishes the UTC day's running total
(SpendUSDDay, every datapoint stamped inside its day): its alarms take the day's Maximum, so a
re-run that publishes the same total again never counts twice, where Sum would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from agentdeploy.naming import (
    DIM_AGENT,
    DIM_STACK,
    METRIC_NAMESPACE,
    METRIC_SPEND_DAY_USD,
    METRIC_SPEND_USD,
    TAG_STACK,
)
from agentdeploy.planner.plan import Plan
from agentdeploy.stacks.common import ROLE_ALERTS, ROLE_BUDGET, tags

#: AWS Budgets allows at most five notifications per budget: four actual thresholds + one forecast.
MAX_ACTUAL_NOTIFICATIONS = 4
#: The AWS Budget's smallest limit. A stack of API agents plans no AWS spend (its agents' budgets
#: are all Claude tokens, metered by the gateway), yet still runs its gateway on AWS; a budget of
#: $0 would make its percentage thresholds meaningless (every cent is over 50% of nothing), and
#: whether AWS Budgets accepts a zero limit at all is not documented. So the limit is floored.
MIN_AWS_BUDGET_USD = 1.0


def stack_budget_usd(plan: Plan) -> float:
    """What AWS bills for the stack's agents: their fleets' GPU-hour shares, as planned."""
    return round(max(MIN_AWS_BUDGET_USD, sum(a.budget.aws_usd for a in plan.agents)), 2)


def stack_thresholds(plan: Plan) -> list[int]:
    """The union of the agents' thresholds, highest kept when AWS's limit forces a choice."""
    union = sorted({p for a in plan.agents for p in a.budget.thresholds_pct})
    return union[-MAX_ACTUAL_NOTIFICATIONS:]


def tag_filter_value(stack: str) -> str:
    """Cost-allocation tag filter as AWS Budgets spells it: user:<key>$<value>."""
    return f"user:{TAG_STACK}${stack}"


def topic_policy_document(topic_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "BudgetsPublish", "Effect": "Allow", "Principal": {"Service": "budgets.amazonaws.com"},
         "Action": "SNS:Publish", "Resource": topic_arn},
        {"Sid": "AlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": "SNS:Publish", "Resource": topic_arn},
        # GPU fleets' launch failures reach the topic through an EventBridge rule.
        {"Sid": "EventsPublish", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
         "Action": "SNS:Publish", "Resource": topic_arn},
    ]}, sort_keys=True)


@dataclass(frozen=True)
class SpendAlarm:
    agent: str
    pct: int
    #: Alarm when one day's spend exceeds this: the pace that reaches pct% of the budget in a month.
    daily_usd: float


def spend_alarms(plan: Plan) -> list[SpendAlarm]:
    """Pace alarms per agent and threshold (pure), copied from the plan. The gateway publishes
    the spend it meters as it accrues; CloudWatch cannot sum a calendar month, so each threshold
    is a daily pace of the gateway's share of the budget instead."""
    return [SpendAlarm(a.name, p.pct, p.daily_usd) for a in plan.agents for p in a.budget.pace]


@dataclass(frozen=True)
class SpendMetric:
    """What the spend alarms read, matching what is published into it."""

    name: str
    #: Sum of the gateway's per-interval increments, or Maximum of a day's running totals.
    statistic: str
    period_s: int = 86400


def spend_metric(plan: Plan) -> SpendMetric:
    """The gateway's increments (SpendUSD, Sum) where the plan deploys it; otherwise the day
    totals `deploy spend publish` writes (SpendUSDDay, Maximum). A plan from before the planner
    decided on the gateway always had one."""
    if plan.deploys_gateway:
        return SpendMetric(METRIC_SPEND_USD, "Sum")
    return SpendMetric(METRIC_SPEND_DAY_USD, "Maximum")


class Alerts(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, plan: Plan, activate_cost_allocation_tag: bool = False,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:alerts:Alerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = plan.stack
        if activate_cost_allocation_tag:
            # The budget's tag filter matches nothing until the tag is active in the payer account.
            # The activation is account-wide and shared by every stack there, so removing this
            # stack leaves it active (retain_on_delete) rather than blinding the others' budgets.
            aws.costexplorer.CostAllocationTag(
                f"{name}-cost-allocation-tag", tag_key=TAG_STACK, status="Active",
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        topic = aws.sns.Topic(f"{name}-topic", name=f"agentdeploy-{stack}-alerts",
                              tags=tags(stack, f"agentdeploy-{stack}-alerts", role=ROLE_ALERTS), opts=child)
        # AWS Budgets publishes only to topics whose policy lets it; CloudWatch alarms of this
        # account may publish as well. Nothing else may.
        aws.sns.TopicPolicy(f"{name}-topic-policy", arn=topic.arn,
                            policy=topic.arn.apply(topic_policy_document), opts=child)
        for i, email in enumerate(plan.alert_emails):
            aws.sns.TopicSubscription(f"{name}-email-{i}", topic=topic.arn, protocol="email", endpoint=email, opts=child)
        self.topic_arn = topic.arn

        notifications: list[aws.budgets.BudgetNotificationArgsDict] = [
            {"comparison_operator": "GREATER_THAN", "notification_type": "ACTUAL", "threshold": pct,
             "threshold_type": "PERCENTAGE", "subscriber_sns_topic_arns": [topic.arn]}
            for pct in stack_thresholds(plan)
        ]
        notifications.append({"comparison_operator": "GREATER_THAN", "notification_type": "FORECASTED",
                              "threshold": 100, "threshold_type": "PERCENTAGE",
                              "subscriber_sns_topic_arns": [topic.arn]})
        aws.budgets.Budget(
            f"{name}-budget", name=f"agentdeploy-{stack}", budget_type="COST", time_unit="MONTHLY",
            limit_amount=f"{stack_budget_usd(plan):.2f}", limit_unit="USD",
            cost_filters=[{"name": "TagKeyValue", "values": [tag_filter_value(stack)]}],
            notifications=notifications, tags=tags(stack, f"agentdeploy-{stack}", role=ROLE_BUDGET), opts=child,
        )
        metric = spend_metric(plan)
        for alarm in spend_alarms(plan):
            alarm_name = f"agentdeploy-{stack}-{alarm.agent}-spend-{alarm.pct}pct"
            aws.cloudwatch.MetricAlarm(
                f"{name}-{alarm.agent}-spend-{alarm.pct}", name=alarm_name,
                alarm_description=(f"{alarm.agent}: spending at a pace that reaches {alarm.pct}% of its "
                                   f"monthly budget (${alarm.daily_usd}/day)"),
                namespace=METRIC_NAMESPACE, metric_name=metric.name,
                dimensions={DIM_STACK: stack, DIM_AGENT: alarm.agent}, statistic=metric.statistic, period=metric.period_s,
                evaluation_periods=1, threshold=alarm.daily_usd, comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching", alarm_actions=[topic.arn],
                tags=tags(stack, alarm_name, agent=alarm.agent, role=ROLE_BUDGET), opts=child,
            )
        self.register_outputs({"topic_arn": self.topic_arn})
