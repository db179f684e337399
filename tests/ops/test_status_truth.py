"""`deploy status` tells the truth (operations review, defects 1 and 2), against moto.

The fleet's own scaling alarms (target tracking's AlarmLow, scale-to-zero, wake-from-zero) sit in
ALARM in normal operation: they are the scale loop at work and never make a stack unhealthy. A GPU
agent the plan puts on a fleet, with no fleet in the cloud, does.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_DEMAND, METRIC_NAMESPACE

from . import cloud
from .deploy_cli import deploy


def _scaling_policy(group: str, name: str) -> str:
    """A real scaling policy ARN, from moto's Auto Scaling."""
    asg = boto3.client("autoscaling")
    asg.put_scaling_policy(AutoScalingGroupName=group, PolicyName=name, PolicyType="SimpleScaling",
                           AdjustmentType="ExactCapacity", ScalingAdjustment=0)
    (policy,) = asg.describe_policies(AutoScalingGroupName=group, PolicyNames=[name])["ScalingPolicies"]
    arn = policy["PolicyARN"]
    assert arn.startswith("arn:aws:autoscaling:") and ":scalingPolicy:" in arn  # AWS's shape
    return arn


def _alarm(name: str, stack: str, agent: str, actions: list[str]) -> None:
    cw = boto3.client("cloudwatch")
    dims = [{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}]
    cw.put_metric_alarm(AlarmName=name, Namespace=METRIC_NAMESPACE, MetricName=METRIC_DEMAND, Statistic="Maximum",
                        Period=60, EvaluationPeriods=15, Threshold=0, ComparisonOperator="LessThanOrEqualToThreshold",
                        Dimensions=dims, AlarmActions=actions)
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="15 datapoints were <= 0")


def test_the_fleets_own_scaling_alarms_are_not_faults(aws, project: Path) -> None:
    cloud.fleet("router-tr", "router", "ticket-router", desired=0)
    idle = _scaling_policy("router-tr", "idle")
    tracking = _scaling_policy("router-tr", "tracking")
    _alarm("router-tr-idle-scale-to-zero", "router", "ticket-router", [idle])
    _alarm("TargetTracking-router-tr-AlarmLow-1234", "router", "ticket-router", [tracking])
    proc = deploy("status", "--stack", "router", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["alarms"] == []
    assert sorted(a["name"] for a in doc["scaling_alarms"]) == ["TargetTracking-router-tr-AlarmLow-1234",
                                                                 "router-tr-idle-scale-to-zero"]
    by = {a["agent"]: a for a in doc["agents"]}
    assert by["ticket-router"]["alarms"] == []
    # The gateway URL is unknown here (ready None): that is not a fault either.
    assert doc["problems"] == []
    assert doc["healthy"] is True


def test_an_alarm_that_also_notifies_people_is_a_fault(aws, project: Path) -> None:
    """Only alarms whose every action is a scaling policy are the scale loop; one paging a topic is not."""
    cloud.fleet("router-tr", "router", "ticket-router", desired=0)
    topic = boto3.client("sns").create_topic(Name="alerts")["TopicArn"]
    _alarm("router-tr-never-healthy", "router", "ticket-router", [topic, _scaling_policy("router-tr", "p")])
    doc = json.loads(deploy("status", "--stack", "router", "--json").stdout)
    assert [a["name"] for a in doc["alarms"]] == ["router-tr-never-healthy"]
    assert doc["healthy"] is False
    assert doc["problems"] == ["alarm router-tr-never-healthy is firing"]


def test_a_planned_gpu_agent_without_a_fleet_is_unhealthy(aws, project: Path) -> None:
    proc = deploy("status", "--stack", "router", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by = {a["agent"]: a for a in doc["agents"]}
    assert by["ticket-router"]["route"] == "gpu"
    assert by["ticket-router"]["fleet"] is None
    assert doc["healthy"] is False
    assert doc["problems"] == ["ticket-router: planned on a GPU fleet, but none is tagged for it"]
    table = deploy("status", "--stack", "router")
    assert table.returncode == 0, table.stderr
    assert "not healthy: ticket-router: planned on a GPU fleet, but none is tagged for it" in table.stdout


def test_a_claude_only_stack_with_no_fleets_is_healthy(aws, project: Path) -> None:
    """The rule is about GPU agents: API agents need no fleet."""
    doc = json.loads(deploy("status", "--stack", "shop", "--json").stdout)
    assert all(a["route"] != "gpu" for a in doc["agents"])
    assert doc["healthy"] is True
