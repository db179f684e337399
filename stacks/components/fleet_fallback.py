"""On-demand fallback for a spot fleet: a standby group the fleet's own alarm fills when spot
capacity does not come, and empties when it does.

The fleet's main group is spot above its on-demand base (the plan's choice). When a GPU type
has no spot capacity in any of the group's zones, the group stays short and every request goes
to Claude for as long as that lasts. The standby group launches the same launch template
on-demand only, into the same target group, with the same ready and drain hooks, when the main
group has wanted capacity and had nothing in service for STARVED_MINUTES; the alarm's return
to OK (the spot group serves again, or wants nothing) scales the standby back to zero.
CloudWatch alarms and simple scaling only: nothing runs outside AWS.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from agentdeploy.planner.plan import FleetPlan

#: Minutes the main group may want capacity with none in service before on-demand steps in:
#: longer than a spot request takes to be fulfilled or refused (minutes), shorter than a user
#: would accept Claude-only service for a self-hosted agent.
STARVED_MINUTES = 10
STANDBY_SUFFIX = "-ondemand"


@dataclass(frozen=True)
class HookSpec:
    """One lifecycle hook, made the same on the spot group and on the standby."""

    name: str
    transition: str
    timeout_s: int
    default_result: str

    def create(self, resource_name: str, group: pulumi.Input[str], opts: pulumi.ResourceOptions) -> aws.autoscaling.LifecycleHook:
        return aws.autoscaling.LifecycleHook(
            resource_name, name=self.name, autoscaling_group_name=group, lifecycle_transition=self.transition,
            heartbeat_timeout=self.timeout_s, default_result=self.default_result, opts=opts)


def _group_metric(metric: str, group: str) -> aws.cloudwatch.MetricAlarmMetricQueryMetricArgsDict:
    return {"metric_name": metric, "namespace": "AWS/AutoScaling", "dimensions": {"AutoScalingGroupName": group},
            "stat": "Maximum", "period": 60}


def standby_mixed_instances(fleet: FleetPlan, launch_template_id: pulumi.Input[str],
                            version: pulumi.Input[str]) -> aws.autoscaling.GroupMixedInstancesPolicyArgsDict:
    types = [fleet.instance_type] + [t for t in fleet.instance_types if t != fleet.instance_type]
    return {
        "instances_distribution": {"on_demand_base_capacity": 0, "on_demand_percentage_above_base_capacity": 100,
                                   "on_demand_allocation_strategy": "prioritized"},
        "launch_template": {"launch_template_specification": {"launch_template_id": launch_template_id,
                                                              "version": version},
                            "overrides": [{"instance_type": t} for t in types]},
    }


class OnDemandFallback:
    """Not a component: children of the fleet, so their URNs sit beside the main group's."""

    def __init__(self, name: str, agent: str, fleet: FleetPlan, *, main_group: str,
                 launch_template: aws.ec2.LaunchTemplate, subnet_ids: pulumi.Input[list[str]],
                 target_group: aws.lb.TargetGroup, group_tags: list[aws.autoscaling.GroupTagArgsDict],
                 hooks: list[HookSpec], grace_s: int, alarm_tags: dict[str, str], parent: pulumi.Resource) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        self.name = f"{main_group}{STANDBY_SUFFIX}"
        self.group = aws.autoscaling.Group(
            f"{name}-ondemand-asg", name=self.name, min_size=0, max_size=fleet.max_replicas,
            vpc_zone_identifiers=subnet_ids, target_group_arns=[target_group.arn],
            health_check_type="ELB", health_check_grace_period=grace_s, default_instance_warmup=grace_s,
            wait_for_capacity_timeout="0",
            mixed_instances_policy=standby_mixed_instances(fleet, launch_template.id,
                                                           launch_template.latest_version.apply(str)),
            instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 50, "skip_matching": True}},
            enabled_metrics=[aws.autoscaling.Metric.GROUP_DESIRED_CAPACITY, aws.autoscaling.Metric.GROUP_IN_SERVICE_INSTANCES],
            metrics_granularity="1Minute", tags=group_tags,
            opts=pulumi.ResourceOptions(parent=parent, ignore_changes=["desiredCapacity"]))
        for hook in hooks:
            hook.create(f"{name}-ondemand-{hook.name}-hook", self.group.name, child)
        size = max(1, fleet.min_replicas)
        fill = aws.autoscaling.Policy(f"{name}-ondemand-fill", autoscaling_group_name=self.group.name,
                                      policy_type="SimpleScaling", adjustment_type="ExactCapacity",
                                      scaling_adjustment=size, cooldown=60, opts=child)
        empty = aws.autoscaling.Policy(f"{name}-ondemand-empty", autoscaling_group_name=self.group.name,
                                       policy_type="SimpleScaling", adjustment_type="ExactCapacity",
                                       scaling_adjustment=0, cooldown=60, opts=child)
        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-spot-starved", name=f"{main_group}-spot-starved",
            alarm_description=f"{agent}: the spot group wanted capacity with none in service for {STARVED_MINUTES} min "
                              f"-> {size} on-demand node(s) until it serves again",
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1, evaluation_periods=STARVED_MINUTES,
            datapoints_to_alarm=STARVED_MINUTES, treat_missing_data="notBreaching",
            metric_queries=[
                {"id": "desired", "metric": _group_metric("GroupDesiredCapacity", main_group), "return_data": False},
                {"id": "serving", "metric": _group_metric("GroupInServiceInstances", main_group), "return_data": False},
                {"id": "starved", "expression": "IF(desired >= 1 AND serving < 1, 1, 0)", "label": "starved",
                 "return_data": True},
            ],
            alarm_actions=[fill.arn], ok_actions=[empty.arn], tags=alarm_tags, opts=child)
