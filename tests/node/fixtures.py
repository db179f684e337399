"""Node-agent test parts: the IMDS emulator, a GPU fleet in moto, the agent as a process.

moto (5.2) does not implement autoscaling CompleteLifecycleAction; `completed_lifecycle_actions`
adds it to the in-process moto server with AWS's validation (the hook must exist on the group,
the instance must belong to it, the result must be CONTINUE or ABANDON) and records each call,
so the test sees exactly what the agent asked AWS to do.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_NAMESPACE
from tests.support.emulators import REPO_ROOT, emulator_argv
from tests.support.emulators.imds import ImdsEmulator
from tests.support.procs import LOOPBACK, ManagedProcess, free_port, start_process, wait_for_http

REGION = "us-east-1"
GROUP = "router-gpu-fleet"
HOOK = "drain"


@pytest.fixture
def imds() -> Iterator[ImdsEmulator]:
    emulator = ImdsEmulator("i-00000000000000000").start()
    yield emulator
    emulator.stop()


@dataclass
class ImdsProcess:
    """The IMDS emulator in its own process, driven over its control API.

    The drain tests use this rather than the in-thread emulator: the test process is busy
    reading several streams, and an emulator sharing its interpreter lock can answer the
    agent's polls seconds late, which an instance's real metadata service never does.
    """

    process: ManagedProcess
    url: str

    def _post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def interrupt(self, action: str = "terminate", in_seconds: float = 120) -> dict:
        return self._post("/_emulator/spot-interruption", {"action": action, "in_seconds": in_seconds})

    def recommend_rebalance(self) -> dict:
        return self._post("/_emulator/rebalance", {})

    def set_target_lifecycle_state(self, state: str | None) -> dict:
        """What the Auto Scaling group does on scale-in: "Terminated"."""
        return self._post("/_emulator/target-lifecycle-state", {"state": state})


@pytest.fixture
def imds_factory(tmp_path: Path) -> Iterator:
    started: list[ImdsProcess] = []

    def start(instance_id: str = "i-00000000000000000", autoscaling_group: str | None = None) -> ImdsProcess:
        port = free_port()
        argv = emulator_argv("imds", "--host", LOOPBACK, "--port", str(port), "--instance-id", instance_id,
                             *(["--autoscaling-group", autoscaling_group] if autoscaling_group else []))
        process = start_process("imds-emulator", argv, tmp_path / f"imds-{port}.log", cwd=REPO_ROOT)
        url = f"http://{LOOPBACK}:{port}"
        started.append(ImdsProcess(process, url))
        wait_for_http(f"{url}/_emulator/requests", timeout_s=20, process=process)
        return started[-1]

    yield start
    for emulator in started:
        emulator.process.stop(grace_s=2.0)


@pytest.fixture
def completed_lifecycle_actions(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import EmptyResult

    calls: list[dict] = []

    def complete_lifecycle_action(self):  # type: ignore[no-untyped-def]
        group = self._get_param("AutoScalingGroupName")
        hook = self._get_param("LifecycleHookName")
        instance = self._get_param("InstanceId")
        result = self._get_param("LifecycleActionResult")
        backend = self.autoscaling_backend
        if not backend.describe_lifecycle_hooks(group, [hook]):
            raise ValidationError(f"No Lifecycle Hook found with name {hook} for group {group}")
        members = [s.instance.id for s in backend.autoscaling_groups[group].instance_states]
        if instance not in members:
            raise ValidationError(f"No active Lifecycle Action found with instance ID {instance}")
        if result not in ("CONTINUE", "ABANDON"):
            raise ValidationError(f"Invalid LifecycleActionResult {result}")
        calls.append({"group": group, "hook": hook, "instance": instance, "result": result})
        return EmptyResult()

    monkeypatch.setattr(AutoScalingResponse, "complete_lifecycle_action", complete_lifecycle_action, raising=False)
    return calls


@contextlib.contextmanager
def engine_paused(process: ManagedProcess) -> Iterator[None]:
    """SIGSTOP vLLM's engine and worker, not its API server, for the block; then SIGCONT.

    Why: requests sent meanwhile are accepted and held by a live front end (`/load` counts them,
    /health answers) while no token is generated. "Requests are in flight when the notice
    comes" is then certain, which a client's view is not: on a 2-core machine vLLM's front end
    may deliver a whole answer in one burst after the engine finished it.
    """
    process.signal_children(signal.SIGSTOP)
    try:
        yield
    finally:
        process.signal_children(signal.SIGCONT)


def wait_for_server_load(base_url: str, count: int, timeout_s: float = 30) -> None:
    """Until vLLM's `/load` (--enable-server-load-tracking) counts `count` requests."""
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{base_url}/load", timeout=5) as resp:
                seen = json.loads(resp.read())["server_load"]
            if seen >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"vLLM's /load never reached {count} (last: {seen})")


@dataclass(frozen=True)
class Fleet:
    group: str
    target_group_arn: str
    instance_id: str


def create_fleet() -> Fleet:
    """What the Pulumi program leaves: a group with one instance in a target group, a drain hook."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(
        LaunchTemplateName="gpu-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g6.xlarge"}
    )
    tg = boto3.client("elbv2", region_name=REGION).create_target_group(
        Name="router-vllm", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="instance",
        HealthCheckPath="/healthz", HealthCheckPort="8081",
    )["TargetGroups"][0]["TargetGroupArn"]
    asg = boto3.client("autoscaling", region_name=REGION)
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, LaunchTemplate={"LaunchTemplateName": "gpu-node", "Version": "$Latest"},
        MinSize=1, MaxSize=2, DesiredCapacity=1, VPCZoneIdentifier=subnet, TargetGroupARNs=[tg],
    )
    asg.put_lifecycle_hook(
        LifecycleHookName=HOOK, AutoScalingGroupName=GROUP, HeartbeatTimeout=120, DefaultResult="CONTINUE",
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
    )
    instance = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]["Instances"][0]
    return Fleet(group=GROUP, target_group_arn=tg, instance_id=instance["InstanceId"])


def agent_dims(stack: str, agent: str) -> list[dict]:
    """The CloudWatch dimensions a node agent publishes under."""
    return [{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}]


def published_metric_names(stack: str, agent: str) -> set[str]:
    """Every metric a node agent of (stack, agent) has published to (moto's) CloudWatch."""
    cw = boto3.client("cloudwatch", region_name=REGION)
    return {m["MetricName"] for m in cw.list_metrics(Namespace=METRIC_NAMESPACE, Dimensions=agent_dims(stack, agent))["Metrics"]}


def registered_targets(target_group_arn: str) -> list[str]:
    health = boto3.client("elbv2", region_name=REGION).describe_target_health(TargetGroupArn=target_group_arn)
    return [d["Target"]["Id"] for d in health["TargetHealthDescriptions"]]


@dataclass
class NodeAgentProcess:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/state", timeout=2) as resp:
            return json.loads(resp.read())

    def wait_for(self, predicate, timeout_s: float, what: str) -> dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.state()
            if predicate(state):
                return state
            time.sleep(0.1)
        raise AssertionError(f"node agent: {what} not reached in {timeout_s}s; state={state};"
                             f" log:\n{self.process.log_tail()}")


def start_node_agent(args: list[str], log_dir: Path) -> NodeAgentProcess:
    port = free_port()
    argv = [sys.executable, "-m", "agentdeploy.serving.node",
            "--health-host", LOOPBACK, "--health-port", str(port), *args]
    process = start_process("node-agent", argv, log_dir / "node-agent.log")
    wait_for_http(f"http://{LOOPBACK}:{port}/healthz", timeout_s=30, process=process, ok=lambda s: s in (200, 503))
    return NodeAgentProcess(process=process, port=port)


@pytest.fixture
def node_agent_factory(tmp_path: Path) -> Iterator:
    """Start node agents; every one is stopped at teardown, whatever the test's outcome."""
    started: list[NodeAgentProcess] = []

    def start(args: list[str]) -> NodeAgentProcess:
        agent = start_node_agent(args, tmp_path)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.process.stop(grace_s=3.0)
