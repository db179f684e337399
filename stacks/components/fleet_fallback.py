"""On-demand fallback for a spot fleet: a standby group the fleet's own alarm fills when spot
capacity does not come, and empties when it does.

The fleet's main group is spot above its on-demand base (the plan's choice). When a GPU type
has no spot capacity in any of the group's zones, the group stays short and every request goes
to Claude for as long as that lasts. The standby group launches the same launch template
on-demand only, into the same target group, with the same ready and drain hooks, when the main
group has wanted capacity and had nothing in service for STARVED_MINUTES; the alarm's return
to OK (the spot group serves again, or wants nothing) scales the standby back to zero.
CloudWatch alarms and simple scaling only: nothing runs outside AWS. Every number and the
alarm itself come from `fleet_rules` (stacks/scaling_rules.py: "spot-starved", "ondemand-fill",
"ondemand-empty", StandbyRule).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from agentdeploy.planner.plan import FleetPlan
from agentdeploy.stacks.components.fleet_scaling import alarm_args, policy_args
from agentdeploy.stacks.scaling_rules import (
    STANDBY_SUFFIX,
    STARVED_MINUTES,
    DimensionSet,
    FleetRules,
    HookRule,
    standby_group_name,
)

__all__ = ["STANDBY_SUFFIX", "STARVED_MINUTES", "OnDemandFallback", "create_hook", "standby_mixed_instances"]


def create_hook(hook: HookRule, resource_name: str, group: pulumi.Input[str],
                opts: pulumi.ResourceOptions) -> aws.autoscaling.LifecycleHook:
    """One lifecycle hook of `fleet_rules`, made the same on the spot group and on the standby
    (a standalone resource, so a change reaches an existing group)."""
    return aws.autoscaling.LifecycleHook(
        resource_name, name=hook.name, autoscaling_group_name=group, lifecycle_transition=hook.transition,
        heartbeat_timeout=hook.timeout_s, default_result=hook.default_result, opts=opts)


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
                 rules: FleetRules, grace_s: int, alarm_tags: dict[str, str], parent: pulumi.Resource) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        self.name = standby_group_name(main_group)
        self.group = aws.autoscaling.Group(
            f"{name}-ondemand-asg", name=self.name, min_size=0, max_size=rules.standby.max_size,
            vpc_zone_identifiers=subnet_ids, target_group_arns=[target_group.arn],
            health_check_type="ELB", health_check_grace_period=grace_s, default_instance_warmup=grace_s,
            wait_for_capacity_timeout="0",
            mixed_instances_policy=standby_mixed_instances(fleet, launch_template.id,
                                                           launch_template.latest_version.apply(str)),
            instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 50, "skip_matching": True}},
            enabled_metrics=[aws.autoscaling.Metric.GROUP_DESIRED_CAPACITY, aws.autoscaling.Metric.GROUP_IN_SERVICE_INSTANCES],
            metrics_granularity="1Minute", tags=group_tags,
            opts=pulumi.ResourceOptions(parent=parent, ignore_changes=["desiredCapacity"]))
        for hook in rules.hooks:
            create_hook(hook, f"{name}-ondemand-{hook.name}-hook", self.group.name, child)
        dims: dict[DimensionSet, pulumi.Input[dict[str, str]]] = {
            "group": {"AutoScalingGroupName": main_group}, "standby": {"AutoScalingGroupName": self.name}}
        self.policies = {
            p.key: aws.autoscaling.Policy(f"{name}-{p.key}", autoscaling_group_name=self.group.name, opts=child,
                                          **policy_args(p, dims=dims))
            for p in rules.policies if p.group == "standby"}
        starved = rules.alarm("spot-starved")
        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-{starved.key}", name=f"{main_group}-{starved.name_suffix}",
            alarm_description=f"{agent}: {starved.description}", tags=alarm_tags, opts=child,
            **alarm_args(starved, dims=dims, actions={k: p.arn for k, p in self.policies.items()}))
