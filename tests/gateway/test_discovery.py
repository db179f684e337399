"""serving/discovery.py: which nodes a fleet's target group or group says take requests, read
from moto's server, and what a failed read leaves in place."""

from __future__ import annotations

import asyncio

import boto3
import pytest

from agentdeploy.serving.config import BreakerSpec, DiscoverySpec, UpstreamSpec
from agentdeploy.serving.discovery import AwsFleetReader, Discovered, decide_targets, refresh, wanted_instances
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.upstreams import Upstream
from tests.gateway.fleet_cloud import REGION, fleet_cloud

ADDRESSES = {"i-a": "10.0.0.1", "i-b": "10.0.0.2", "i-c": "10.0.0.3", "i-d": "10.0.0.4", "i-e": "10.0.0.5"}


def _desc(tid: str, state: str) -> dict:
    return {"Target": {"Id": tid, "Port": 8000}, "TargetHealth": {"State": state}}


def test_only_healthy_targets_route_and_draining_ones_are_named():
    health = [_desc("i-a", "healthy"), _desc("i-b", "draining"), _desc("i-c", "initial"),
              _desc("i-d", "unhealthy"), _desc("i-e", "unused"), _desc("i-f", "healthy")]
    found = decide_targets(health, None, ADDRESSES, 8000)
    assert found == Discovered(urls=("http://10.0.0.1:8000",), draining=("http://10.0.0.2:8000",), unresolved=("i-f",))


def test_a_target_group_answer_decides_even_when_the_group_lists_the_node_in_service():
    groups = [{"Instances": [{"InstanceId": "i-a", "LifecycleState": "InService", "HealthStatus": "Healthy"}]}]
    assert decide_targets([], groups, ADDRESSES, 8000).urls == ()


def test_without_a_target_group_in_service_healthy_instances_route_and_leaving_ones_drain():
    groups = [{"Instances": [
        {"InstanceId": "i-a", "LifecycleState": "InService", "HealthStatus": "Healthy"},
        {"InstanceId": "i-b", "LifecycleState": "Terminating:Wait", "HealthStatus": "Healthy"},
        {"InstanceId": "i-c", "LifecycleState": "Pending:Wait", "HealthStatus": "Healthy"},
        {"InstanceId": "i-d", "LifecycleState": "InService", "HealthStatus": "Unhealthy"},
    ]}]
    found = decide_targets(None, groups, ADDRESSES, 9000)
    assert found.urls == ("http://10.0.0.1:9000",)
    assert found.draining == ("http://10.0.0.2:9000",)
    assert wanted_instances(None, groups) == ["i-a", "i-b", "i-c", "i-d"]


def _upstream(spec: DiscoverySpec) -> Upstream:
    return Upstream("vllm-router", UpstreamSpec(kind="openai", discovery=spec), BreakerSpec(), None)


def test_discovery_against_moto_routes_healthy_nodes_and_drops_stopped_and_deregistered_ones(aws):
    cloud = fleet_cloud()
    a, b, c = (cloud.launch(ip) for ip in ("10.20.1.11", "10.20.1.12", "10.20.1.13"))
    cloud.register(a, b, c)
    spec = DiscoverySpec(region=REGION, target_group_arn=cloud.target_group_arn, port=8000)
    reader, up, metrics = AwsFleetReader(spec), _upstream(spec), GatewayMetrics()

    found = asyncio.run(refresh(up, reader, metrics))
    assert found is not None
    assert [t.url for t in up.targets] == ["http://10.20.1.11:8000", "http://10.20.1.12:8000", "http://10.20.1.13:8000"]
    assert metrics.discovered.get(("vllm-router",)) == 3

    cloud.stop(c)  # its target reads `unused`: no new requests
    cloud.deregister(b)  # the node agent's drain: it leaves the target group
    asyncio.run(refresh(up, reader, metrics))
    assert [t.url for t in up.targets] == ["http://10.20.1.11:8000"]
    assert set(reader.addresses) == {a, c}  # only the instances the answer still names


def test_a_failed_read_keeps_the_last_known_nodes_and_is_counted(aws, caplog):
    cloud = fleet_cloud()
    a = cloud.launch("10.20.1.21")
    cloud.register(a)
    spec = DiscoverySpec(region=REGION, target_group_arn=cloud.target_group_arn, port=8000)
    reader, up, metrics = AwsFleetReader(spec), _upstream(spec), GatewayMetrics()
    asyncio.run(refresh(up, reader, metrics))
    kept = up.targets[0]

    boto3.client("elbv2", region_name=REGION).delete_target_group(TargetGroupArn=cloud.target_group_arn)
    with caplog.at_level("WARNING", logger="agentdeploy.gateway.discovery"):
        assert asyncio.run(refresh(up, reader, metrics)) is None
    assert up.targets == [kept]  # same Target object: breaker and load carried on
    assert metrics.discovery_errors.get(("vllm-router", "TargetGroupNotFound")) == 1
    assert "discovery_failed" in caplog.text


def test_an_unreachable_endpoint_is_a_counted_failure_not_a_crash(aws, monkeypatch):
    from tests.support.moto import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    spec = DiscoverySpec(region=REGION, asg_name="agentdeploy-test-router")
    up, metrics = _upstream(spec), GatewayMetrics()
    up.set_discovered(["http://10.0.0.9:8000"])
    assert asyncio.run(refresh(up, AwsFleetReader(spec), metrics)) is None
    assert [t.url for t in up.targets] == ["http://10.0.0.9:8000"]
    assert metrics.discovery_errors.get(("vllm-router", "EndpointConnectionError")) == 1


def test_discovery_needs_a_source():
    with pytest.raises(ValueError, match="target_group_arn"):
        DiscoverySpec(region=REGION)


def test_a_reload_keeps_the_reader_and_the_nodes_of_an_unchanged_fleet():
    from agentdeploy.serving.discovery import readers_for

    spec = DiscoverySpec(region=REGION, target_group_arn="arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/x/1")
    old = _upstream(spec)
    old.set_discovered(["http://10.0.0.1:8000"])
    old.targets[0].in_flight = 2
    readers = readers_for([old], {})
    new = _upstream(spec)
    new.adopt(old)
    assert new.targets == old.targets  # the same Target: load and breaker carried over
    assert readers_for([new], readers)["vllm-router"] is readers["vllm-router"]
    moved = _upstream(spec.model_copy(update={"target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/y/2"}))
    moved.adopt(old)
    assert moved.targets == []  # another target group: its nodes are read afresh
    assert readers_for([moved], readers)["vllm-router"] is not readers["vllm-router"]


def test_without_a_target_group_the_groups_in_service_instances_are_read_from_moto(aws):
    cloud = fleet_cloud()
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_launch_template(LaunchTemplateName="gpu-node-lt", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    boto3.client("autoscaling", region_name=REGION).create_auto_scaling_group(
        AutoScalingGroupName="agentdeploy-test-router", MinSize=0, MaxSize=4, DesiredCapacity=2,
        LaunchTemplate={"LaunchTemplateName": "gpu-node-lt"}, VPCZoneIdentifier=cloud.subnet_id)
    ips = sorted(i["PrivateIpAddress"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"])
    spec = DiscoverySpec(region=REGION, asg_name="agentdeploy-test-router", port=8000)
    up = _upstream(spec)
    assert asyncio.run(refresh(up, AwsFleetReader(spec), GatewayMetrics())) is not None
    assert len(ips) == 2
    assert sorted(t.url for t in up.targets) == sorted(f"http://{ip}:8000" for ip in ips)
