"""The reaper against moto's server: it scales exactly its own stack's idle fleets, nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agentdeploy.errors import OperationFailed, PartialChange
from agentdeploy.naming import METRIC_DEMAND, METRIC_IN_FLIGHT
from agentdeploy.ops.aws import AwsClient, AwsSession
from agentdeploy.ops.fleets import Fleet
from agentdeploy.ops.metrics import Reading
from agentdeploy.ops.reaper import decide, reap

from . import cloud

WINDOW = timedelta(minutes=15)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def _fleet(desired: int = 1, min_size: int = 1, agent: str | None = "router") -> Fleet:
    return Fleet("g", agent, min_size, 4, desired, T0, (), {})


@pytest.mark.parametrize(
    ("fleet", "reading", "age_min", "action", "why"),
    [
        (_fleet(0, 0), Reading(None, 0, 0), 60, "keep", "already at zero"),
        (_fleet(), Reading(2.0, 10, 1), 60, "keep", "traffic"),
        (_fleet(), Reading(0.5, 10, 1), 60, "keep", "traffic"),
        (_fleet(), Reading(None, 0, 0), 10, "keep", "up for 10 min only"),
        (_fleet(), Reading(0.0, 12, 1), 10, "keep", "up for 10 min only"),
        (_fleet(), Reading(None, 0, 0), 15, "scale-to-zero", "no demand datapoints"),
        (_fleet(), Reading(0.0, 15, 2), 60, "scale-to-zero", "demand 0"),
        (_fleet(agent=None), Reading(None, 0, 0), 60, "keep", "no agentdeploy:agent tag"),
    ],
)
def test_decide(fleet: Fleet, reading: Reading, age_min: int, action: str, why: str) -> None:
    verdict = decide(fleet, reading, since=T0, now=T0 + timedelta(minutes=age_min), window=WINDOW)
    assert verdict.action == action
    assert why in verdict.reason


def _clients():
    session = AwsSession()
    return session.client("autoscaling"), session.client("ec2"), session.client("cloudwatch")


def _state(name: str) -> tuple[int, int]:
    g = cloud.group(name)
    return g["MinSize"], g["DesiredCapacity"]


@pytest.fixture
def world(aws):
    """Fleets of two stacks plus untagged look-alikes; `now` is 30 minutes after they came up."""
    now = datetime.now(timezone.utc) + timedelta(minutes=30)
    cloud.fleet("prod-router", "prod", "router", desired=2)
    cloud.fleet("prod-intake", "prod", "intake", desired=1)
    cloud.fleet("prod-silent", "prod", "silent", desired=1)
    cloud.fleet("prod-replica-busy", "prod", "summarise", desired=1)
    cloud.fleet("prod-no-role", "prod", "router", desired=1, role=None)
    cloud.fleet("untagged", None, "router", desired=1)
    cloud.fleet("staging-router", "staging", "router", desired=1)
    # router: zero demand all window; intake: busy 5 min ago; summarise: busy, published with an
    # extra dimension per replica; silent: never published; staging: idle but another stack.
    for minutes in (14, 10, 5, 1):
        cloud.put_metric(METRIC_DEMAND, "prod", "router", 0, now - timedelta(minutes=minutes))
        cloud.put_metric(METRIC_DEMAND, "staging", "router", 0, now - timedelta(minutes=minutes))
    cloud.put_metric(METRIC_DEMAND, "prod", "intake", 3, now - timedelta(minutes=5))
    cloud.put_metric(METRIC_IN_FLIGHT, "prod", "summarise", 1, now - timedelta(minutes=2), {"InstanceId": "i-1"})
    return now


def test_scales_exactly_the_idle_fleets_of_its_stack(world: datetime) -> None:
    before = {n: _state(n) for n in ("prod-intake", "prod-replica-busy", "prod-no-role", "untagged", "staging-router")}
    reports = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: world)

    by_name = {r.fleet: r for r in reports}
    assert set(by_name) == {"prod-router", "prod-intake", "prod-silent", "prod-replica-busy"}
    assert {n for n, r in by_name.items() if r.applied} == {"prod-router", "prod-silent"}
    assert _state("prod-router") == (0, 0)
    assert _state("prod-silent") == (0, 0)
    assert by_name["prod-router"].datapoints == 4 and by_name["prod-router"].desired_before == 2
    assert "traffic" in by_name["prod-intake"].reason
    assert "traffic" in by_name["prod-replica-busy"].reason
    assert {n: _state(n) for n in before} == before


def test_dry_run_changes_nothing(world: datetime) -> None:
    names = ["prod-router", "prod-intake", "prod-silent", "prod-replica-busy", "untagged", "staging-router"]
    before = {n: _state(n) for n in names}
    reports = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=True, clock=lambda: world)
    assert {r.fleet for r in reports if r.action == "scale-to-zero"} == {"prod-router", "prod-silent"}
    assert not any(r.applied for r in reports)
    assert {n: _state(n) for n in names} == before


def test_young_fleet_without_datapoints_is_kept(aws) -> None:
    cloud.fleet("prod-new", "prod", "router", desired=1)
    now = datetime.now(timezone.utc) + timedelta(minutes=5)
    (report,) = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert report.action == "keep" and "less than the 15 min idle window" in report.reason
    assert _state("prod-new") == (1, 1)


def test_traffic_before_the_window_does_not_keep_a_fleet(aws) -> None:
    cloud.fleet("prod-router", "prod", "router", desired=1)
    now = datetime.now(timezone.utc) + timedelta(minutes=60)
    cloud.put_metric(METRIC_DEMAND, "prod", "router", 7, now - timedelta(minutes=40))
    (report,) = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert report.applied and _state("prod-router") == (0, 0)
    # The same traffic falls inside a 45-minute window: kept.
    cloud.fleet("prod-b", "prod", "b", desired=1)
    cloud.put_metric(METRIC_DEMAND, "prod", "b", 7, now - timedelta(minutes=40))
    reports = reap(*_clients(), stack="prod", idle_minutes={"b": 45}, dry_run=False, clock=lambda: now)
    assert {r.fleet: r.action for r in reports}["prod-b"] == "keep"


class _FailingUpdates(AwsClient):
    """The autoscaling client, except that updating `fail` is denied."""

    def __init__(self, inner: AwsClient, fail: set[str]):
        super().__init__(inner.raw)
        self.fail = fail

    def call(self, method: str, **kwargs):
        if method == "update_auto_scaling_group" and kwargs["AutoScalingGroupName"] in self.fail:
            raise OperationFailed("AWS autoscaling:UpdateAutoScalingGroup failed: ValidationError")
        return super().call(method, **kwargs)


def test_some_updates_failing_is_a_partial_change(world: datetime) -> None:
    asg, ec2, cw = _clients()
    with pytest.raises(PartialChange) as caught:
        reap(_FailingUpdates(asg, {"prod-silent"}), ec2, cw, stack="prod", idle_minutes=15, dry_run=False,
             clock=lambda: world)
    assert caught.value.exit_code == 5
    assert any("prod-silent" in d for d in caught.value.details)
    assert _state("prod-router") == (0, 0) and _state("prod-silent") == (1, 1)


def test_all_updates_failing_is_a_failure(world: datetime) -> None:
    asg, ec2, cw = _clients()
    with pytest.raises(OperationFailed):
        reap(_FailingUpdates(asg, {"prod-silent", "prod-router"}), ec2, cw, stack="prod", idle_minutes=15,
             dry_run=False, clock=lambda: world)


class _Ec2Lagging(AwsClient):
    """EC2 that does not describe the group's instances yet (eventual consistency)."""

    def paginate(self, method: str, result_key: str, **kwargs):
        return [] if method == "describe_instances" else super().paginate(method, result_key, **kwargs)


def test_instance_ec2_cannot_describe_counts_as_just_launched(aws) -> None:
    cloud.fleet("prod-router", "prod", "router", desired=1)
    asg, ec2, cw = _clients()
    now = datetime.now(timezone.utc) + timedelta(hours=2)
    (report,) = reap(asg, _Ec2Lagging(ec2.raw), cw, stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert report.action == "keep" and _state("prod-router") == (1, 1)


class _ScaledOutMeanwhile(AwsClient):
    """Autoscaling whose group scales out (demand arrived) between the reaper's read and its write."""

    def __init__(self, inner: AwsClient, name: str):
        super().__init__(inner.raw)
        self.name, self.bumped = name, False

    def call(self, method: str, **kwargs):
        if method == "describe_auto_scaling_groups" and not self.bumped:
            self.bumped = True
            self.raw.set_desired_capacity(AutoScalingGroupName=self.name, DesiredCapacity=3)
        return super().call(method, **kwargs)


def test_a_fleet_scaled_out_while_reaping_is_kept(aws) -> None:
    cloud.fleet("prod-router", "prod", "router", desired=1)
    asg, ec2, cw = _clients()
    now = datetime.now(timezone.utc) + timedelta(hours=2)
    (report,) = reap(_ScaledOutMeanwhile(asg, "prod-router"), ec2, cw, stack="prod", idle_minutes=15, dry_run=False,
                     clock=lambda: now)
    assert report.action == "keep" and "scaled out to 3" in report.reason
    assert cloud.group("prod-router")["DesiredCapacity"] == 3
