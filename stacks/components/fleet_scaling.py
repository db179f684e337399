"""A GPU fleet's alarms and scaling policies, every threshold from the plan.

Target tracking on per-replica demand; wake from zero when the gateway reports demand while
the group is empty; scale to the plan's floor after its idle window (a run of zero demand,
missing data never counts as idle); and two alarms to the stack's SNS topic for a fleet that
cannot serve: instances failing to launch (EventBridge: EC2 Instance Launch Unsuccessful,
which covers no capacity, quota and bad launch template), and a fleet that wants capacity yet
has no healthy target for longer than a node may take to turn healthy.
"""

from __future__ import annotations

import json
import math

import pulumi
import pulumi_aws as aws

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_DEMAND, METRIC_NAMESPACE, ROLE_GPU_FLEET
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.stacks.common import short_name, tags

#: EventBridge rule names: at most 64 characters.
EVENT_RULE_NAME_MAX = 64


def demand_dimensions(stack: str, agent: str) -> dict[str, str]:
    return {DIM_STACK: stack, DIM_AGENT: agent}


def scaling_warmup_s(cold_start_s: float) -> int:
    """The plan's cold start plus half again, at least five minutes (scaling warm-up)."""
    return max(300, math.ceil(cold_start_s * 1.5))


def launch_failure_pattern(asg_name: str) -> str:
    """EventBridge pattern for this group's failed launches."""
    return json.dumps({"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance Launch Unsuccessful"],
                       "detail": {"AutoScalingGroupName": [asg_name]}}, sort_keys=True)


class FleetScaling:
    """Not a component: its resources are children of the fleet, so their URNs stay put."""

    def __init__(self, name: str, stack: str, agent: str, fleet: FleetPlan, *, asg: aws.autoscaling.Group,
                 asg_name: str, target_group: aws.lb.TargetGroup, balancer: aws.lb.LoadBalancer,
                 alert_topic_arn: pulumi.Input[str], launch_hook_timeout_s: int, parent: pulumi.Resource) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        base = asg_name
        t = lambda n: tags(stack, n, agent=agent, role=ROLE_GPU_FLEET)  # noqa: E731
        dims = demand_dimensions(stack, agent)
        demand: aws.cloudwatch.MetricAlarmMetricQueryMetricArgsDict = {
            "metric_name": METRIC_DEMAND, "namespace": METRIC_NAMESPACE, "dimensions": dims, "stat": "Maximum", "period": 60}

        # Target tracking on each replica's demand (requests waiting + running, which every
        # node agent publishes under {Stack, Agent}: the Average is the per-replica load). An
        # LLM replica saturates on concurrent sequences, not on CPU.
        self.target_tracking = aws.autoscaling.Policy(
            f"{name}-demand-tracking", autoscaling_group_name=asg.name, policy_type="TargetTrackingScaling",
            estimated_instance_warmup=scaling_warmup_s(fleet.cold_start_s),
            target_tracking_configuration={
                "target_value": fleet.target_queue_per_replica,
                "customized_metric_specification": {
                    "namespace": METRIC_NAMESPACE, "metric_name": METRIC_DEMAND, "statistic": "Average",
                    "metric_dimensions": [{"name": k, "value": v} for k, v in dims.items()],
                },
            },
            opts=child,
        )

        # Wake from zero: demand reported while the group has no capacity. With no nodes, the
        # only publisher of Demand is the gateway (requests it had to serve elsewhere).
        self.wake_policy = aws.autoscaling.Policy(
            f"{name}-wake", autoscaling_group_name=asg.name, policy_type="SimpleScaling",
            adjustment_type="ExactCapacity", scaling_adjustment=max(1, fleet.min_replicas), cooldown=60, opts=child)
        self.wake_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-wake", name=f"{base}-wake-from-zero",
            alarm_description=f"{agent}: demand while the fleet is at zero -> start {max(1, fleet.min_replicas)} replica(s)",
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1, evaluation_periods=1,
            treat_missing_data="notBreaching",
            metric_queries=[
                {"id": "demand", "metric": demand, "return_data": False},
                {"id": "desired", "metric": {"metric_name": "GroupDesiredCapacity", "namespace": "AWS/AutoScaling",
                                             "dimensions": {"AutoScalingGroupName": base}, "stat": "Maximum", "period": 60},
                 "return_data": False},
                {"id": "wake", "expression": "IF(demand > 0 AND desired < 1, 1, 0)", "label": "wake", "return_data": True},
            ],
            alarm_actions=[self.wake_policy.arn], tags=t(f"{base}-wake"), opts=child,
        )

        # Scale to zero after the idle window, in the cloud: idle GPUs go away with no laptop
        # running. Every serving node publishes Demand each minute (0 when idle), so idleness
        # is a run of zeros; a gap in the data (agent restarting, CloudWatch delay) is not
        # idleness and never scales a busy fleet in.
        self.idle_policy = aws.autoscaling.Policy(
            f"{name}-idle", autoscaling_group_name=asg.name, policy_type="SimpleScaling",
            adjustment_type="ExactCapacity", scaling_adjustment=fleet.min_replicas, cooldown=300, opts=child)
        self.idle_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-idle", name=f"{base}-idle-scale-to-zero",
            alarm_description=f"{agent}: no demand for {fleet.idle_minutes} min -> scale to {fleet.min_replicas}",
            namespace=METRIC_NAMESPACE, metric_name=METRIC_DEMAND, dimensions=dims, statistic="Maximum",
            period=60, evaluation_periods=fleet.idle_minutes, threshold=0,
            comparison_operator="LessThanOrEqualToThreshold", treat_missing_data="notBreaching",
            alarm_actions=[self.idle_policy.arn], tags=t(f"{base}-idle"), opts=child,
        )

        # A fleet that cannot launch: no capacity, no quota, a bad launch template.
        rule = aws.cloudwatch.EventRule(
            f"{name}-launch-failed", name=short_name(f"{base}-launch-failed", EVENT_RULE_NAME_MAX),
            description=f"{agent}: an instance of the GPU fleet failed to launch",
            event_pattern=launch_failure_pattern(base), tags=t(f"{base}-launch-failed"), opts=child)
        aws.cloudwatch.EventTarget(f"{name}-launch-failed", rule=rule.name, arn=alert_topic_arn, opts=child)
        self.launch_failed_rule = rule

        # A fleet that never turns healthy: capacity wanted, no healthy target, for longer than
        # the ready hook lets a node take. Missing data is not breaching (an empty group).
        minutes = math.ceil(launch_hook_timeout_s / 60) + 5
        healthy_dims = pulumi.Output.all(target_group.arn_suffix, balancer.arn_suffix).apply(
            lambda v: {"TargetGroup": v[0], "LoadBalancer": v[1]})
        self.unhealthy_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-never-healthy", name=f"{base}-never-healthy",
            alarm_description=f"{agent}: the fleet wants capacity but has had no healthy node for {minutes} min",
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1, evaluation_periods=minutes,
            datapoints_to_alarm=minutes, treat_missing_data="notBreaching",
            metric_queries=[
                {"id": "desired", "metric": {"metric_name": "GroupDesiredCapacity", "namespace": "AWS/AutoScaling",
                                             "dimensions": {"AutoScalingGroupName": base}, "stat": "Maximum", "period": 60},
                 "return_data": False},
                {"id": "healthy", "metric": {"metric_name": "HealthyHostCount", "namespace": "AWS/ApplicationELB",
                                             "dimensions": healthy_dims, "stat": "Maximum", "period": 60},
                 "return_data": False},
                {"id": "stuck", "expression": "IF(desired >= 1 AND FILL(healthy, 0) < 1, 1, 0)", "label": "stuck",
                 "return_data": True},
            ],
            alarm_actions=[alert_topic_arn], tags=t(f"{base}-never-healthy"), opts=child)
