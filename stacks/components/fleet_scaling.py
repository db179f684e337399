"""A GPU fleet's alarms and scaling policies, built from `fleet_rules` (stacks/scaling_rules.py).

The rules say what each alarm reads and decides (the single source `deploy simulate` also
evaluates); this module only turns them into Pulumi resources, filling in what the rules
cannot know: resource names, dimensions that are outputs, policy ARNs and the SNS topic. Beside
them, one EventBridge rule to the stack's SNS topic for instances failing to launch (EC2
Instance Launch Unsuccessful: no capacity, quota, bad launch template).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from agentdeploy.naming import DIM_AGENT, DIM_STACK, ROLE_GPU_FLEET
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.stacks.common import short_name, tags
from agentdeploy.stacks.scaling_rules import (
    ALERT,
    AlarmRule,
    DimensionSet,
    FleetRules,
    MetricRule,
    PolicyRule,
    expression_id,
    scaling_warmup_s,
    standby_group_name,
)

#: EventBridge rule names: at most 64 characters.
EVENT_RULE_NAME_MAX = 64

__all__ = ["FleetScaling", "alarm_args", "demand_dimensions", "launch_failure_pattern", "policy_args",
           "scaling_warmup_s"]

Dimensions = Mapping[DimensionSet, pulumi.Input[Mapping[str, str]]]


def demand_dimensions(stack: str, agent: str) -> dict[str, str]:
    return {DIM_STACK: stack, DIM_AGENT: agent}


def launch_failure_pattern(asg_name: str) -> str:
    """EventBridge pattern for this group's failed launches."""
    return json.dumps({"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance Launch Unsuccessful"],
                       "detail": {"AutoScalingGroupName": [asg_name]}}, sort_keys=True)


def _bound(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


def _metric_stat(metric: MetricRule, dims: Dimensions) -> aws.cloudwatch.MetricAlarmMetricQueryMetricArgsDict:
    return {"metric_name": metric.metric_name, "namespace": metric.namespace, "dimensions": dims[metric.dimensions],
            "stat": metric.stat, "period": metric.period_s}


def alarm_args(rule: AlarmRule, *, dims: Dimensions, actions: Mapping[str, pulumi.Input[str]]) -> dict[str, Any]:
    """The MetricAlarm's arguments for one rule (everything but its name, description and tags).
    `actions` maps each policy key, and ALERT, to an ARN."""
    args: dict[str, Any] = {
        "comparison_operator": rule.comparison, "threshold": rule.threshold,
        "evaluation_periods": rule.evaluation_periods, "datapoints_to_alarm": rule.datapoints_to_alarm,
        "treat_missing_data": rule.treat_missing_data,
        "alarm_actions": [actions[a] for a in rule.alarm_actions],
    }
    if rule.ok_actions:
        args["ok_actions"] = [actions[a] for a in rule.ok_actions]
    if rule.expression is None:
        only = rule.metrics[0]
        args.update(namespace=only.namespace, metric_name=only.metric_name, dimensions=dims[only.dimensions],
                    statistic=only.stat, period=rule.period_s)
    else:
        args["metric_queries"] = [{"id": m.id, "metric": _metric_stat(m, dims), "return_data": False}
                                  for m in rule.metrics] + [
            {"id": expression_id(rule), "expression": rule.expression, "label": rule.key, "return_data": True}]
    return args


def policy_args(rule: PolicyRule, *, dims: Dimensions) -> dict[str, Any]:
    """The autoscaling Policy's arguments for one rule (everything but its group)."""
    if rule.kind == "target-tracking":
        assert rule.metric is not None and rule.target_value is not None, rule
        metric_dims = dims[rule.metric.dimensions]
        return {"policy_type": "TargetTrackingScaling", "estimated_instance_warmup": rule.warmup_s,
                "target_tracking_configuration": {
                    "target_value": rule.target_value, "disable_scale_in": rule.scale_in_disabled,
                    "customized_metric_specification": {
                        "namespace": rule.metric.namespace, "metric_name": rule.metric.metric_name,
                        "statistic": rule.metric.stat,
                        "metric_dimensions": pulumi.Output.from_input(metric_dims).apply(
                            lambda d: [{"name": k, "value": v} for k, v in d.items()]),
                    }}}
    if rule.kind == "step":
        args: dict[str, Any] = {
            "policy_type": "StepScaling", "adjustment_type": rule.adjustment_type,
            "step_adjustments": [{"scaling_adjustment": s.adjustment, "metric_interval_lower_bound": _bound(s.lower),
                                  "metric_interval_upper_bound": _bound(s.upper)} for s in rule.steps]}
        if rule.warmup_s is not None:
            args["estimated_instance_warmup"] = rule.warmup_s
        return args
    return {"policy_type": "SimpleScaling", "adjustment_type": rule.adjustment_type,
            "scaling_adjustment": rule.adjustment, "cooldown": rule.cooldown_s}


class FleetScaling:
    """Not a component: its resources are children of the fleet, so their URNs stay put."""

    def __init__(self, name: str, stack: str, agent: str, fleet: FleetPlan, *, asg: aws.autoscaling.Group,
                 asg_name: str, target_group: aws.lb.TargetGroup, balancer: aws.lb.LoadBalancer,
                 alert_topic_arn: pulumi.Input[str], rules: FleetRules, parent: pulumi.Resource) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        base = asg_name
        self.rules = rules
        t = lambda n: tags(stack, n, agent=agent, role=ROLE_GPU_FLEET)  # noqa: E731
        healthy_dims = pulumi.Output.all(target_group.arn_suffix, balancer.arn_suffix).apply(
            lambda v: {"TargetGroup": v[0], "LoadBalancer": v[1]})
        dims: dict[DimensionSet, pulumi.Input[Mapping[str, str]]] = {
            "agent": demand_dimensions(stack, agent), "group": {"AutoScalingGroupName": base},
            "standby": {"AutoScalingGroupName": standby_group_name(base)}, "target": healthy_dims}

        # The spot group's policies; the standby's belong to fleet_fallback.py.
        self.policies: dict[str, aws.autoscaling.Policy] = {
            p.key: aws.autoscaling.Policy(f"{name}-{p.key}", autoscaling_group_name=asg.name, opts=child,
                                          **policy_args(p, dims=dims))
            for p in self.rules.policies if p.group == "main"}
        actions: dict[str, pulumi.Input[str]] = {k: p.arn for k, p in self.policies.items()}
        actions[ALERT] = alert_topic_arn
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        for rule in self.rules.alarms:
            if not set(rule.alarm_actions + rule.ok_actions) <= set(actions):
                continue  # acts on the standby group: fleet_fallback.py builds it
            self.alarms[rule.key] = aws.cloudwatch.MetricAlarm(
                f"{name}-{rule.key}", name=f"{base}-{rule.name_suffix}", alarm_description=f"{agent}: {rule.description}",
                tags=t(f"{base}-{rule.key}"), opts=child,
                **alarm_args(rule, dims=dims, actions=actions))
        self.target_tracking = self.policies["demand-tracking"]
        self.wake_policy, self.wake_alarm = self.policies["wake"], self.alarms["wake"]
        self.idle_policy, self.idle_alarm = self.policies["idle"], self.alarms["idle"]
        self.silent_alarm = self.alarms["silent"]
        self.unhealthy_alarm = self.alarms["never-healthy"]

        # A fleet that cannot launch: no capacity, no quota, a bad launch template.
        launch_failed = aws.cloudwatch.EventRule(
            f"{name}-launch-failed", name=short_name(f"{base}-launch-failed", EVENT_RULE_NAME_MAX),
            description=f"{agent}: an instance of the GPU fleet failed to launch",
            event_pattern=launch_failure_pattern(base), tags=t(f"{base}-launch-failed"), opts=child)
        aws.cloudwatch.EventTarget(f"{name}-launch-failed", rule=launch_failed.name, arn=alert_topic_arn, opts=child)
        self.launch_failed_rule = launch_failed
