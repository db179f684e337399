"""The reaper against moto's server: it scales exactly its own stack's idle fleets, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentdeploy.errors import MissingDependency, OperationFailed, PartialChange
from agentdeploy.naming import METRIC_DEMAND, METRIC_IN_FLIGHT
from agentdeploy.ops.aws import AwsClient, AwsSession
from agentdeploy.ops.fleets import Fleet, FleetInstance
from agentdeploy.ops.metrics import Reading
from agentdeploy.ops.reaper import decide, reap

from . import cloud

WINDOW = timedelta(minutes=15)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _fleet(desired: int = 1, min_size: int = 0, agent: str | None = "router", in_service: int = 0) -> Fleet:
    instances = tuple(FleetInstance(f"i-{n}", "g5.xlarge", "InService", "Healthy") for n in range(in_service))
    return Fleet("g", agent, min_size, 4, desired, T0, instances, {})


@pytest.mark.parametrize(
    ("fleet", "reading", "age_min", "action", "why"),
    [
        (_fleet(0, 0), Reading(None, 0, 0), 60, "keep", "already at zero"),
        (_fleet(), Reading(2.0, 10, 1), 60, "keep", "traffic"),
        (_fleet(), Reading(0.5, 10, 1), 60, "keep", "traffic"),
        (_fleet(), Reading(None, 0, 0), 10, "keep", "up for 10 min only"),
        (_fleet(), Reading(0.0, 12, 1), 10, "keep", "up for 10 min only"),
        (_fleet(2, in_service=2), Reading(None, 0, 0), 15, "keep",
         "no demand data for 15 min while 2 instance(s) run: check the node agent's metrics publishing"),
        (_fleet(3), Reading(None, 0, 1), 60, "keep", "no demand data for 15 min while desired capacity is 3"),
        (_fleet(), Reading(0.0, 15, 2), 60, "scale-to-zero", "demand 0"),
        (_fleet(2, 1), Reading(0.0, 15, 2), 60, "keep", "the plan keeps 1 replica(s) warm (MinSize 1)"),
        (_fleet(2, 2), Reading(None, 0, 0), 60, "keep", "the plan keeps 2 replica(s) warm (MinSize 2)"),
        (_fleet(agent=None), Reading(None, 0, 0), 60, "keep", "no agentdeploy:agent tag"),
    ],
)
def test_decide(fleet: Fleet, reading: Reading, age_min: int, action: str, why: str) -> None:
    verdict = decide(fleet, reading, since=T0, now=T0 + timedelta(minutes=age_min), window=WINDOW)
    assert verdict.action == action
    assert why in verdict.reason


def test_decide_treats_missing_data_as_idle_only_when_asked() -> None:
    now = T0 + timedelta(minutes=60)
    silent = _fleet(1, in_service=1)
    assert decide(silent, Reading(None, 0, 0), T0, now, WINDOW).action == "keep"
    verdict = decide(silent, Reading(None, 0, 0), T0, now, WINDOW, treat_missing_as_idle=True)
    assert verdict.action == "scale-to-zero"
    assert "no demand datapoints" in verdict.reason
    # The flag widens only the missing-data rule: traffic, youth and a warm floor still keep.
    assert decide(silent, Reading(1.0, 3, 1), T0, now, WINDOW, treat_missing_as_idle=True).action == "keep"
    assert decide(silent, Reading(None, 0, 0), T0, T0 + timedelta(minutes=5), WINDOW, treat_missing_as_idle=True).action == "keep"
    assert decide(_fleet(1, 1), Reading(None, 0, 0), T0, now, WINDOW, treat_missing_as_idle=True).action == "keep"


def _clients():
    session = AwsSession()
    return session.client("autoscaling"), session.client("ec2"), session.client("cloudwatch")


def _state(name: str) -> tuple[int, int]:
    g = cloud.group(name)
    return g["MinSize"], g["DesiredCapacity"]


def _quiet(stack: str, agent: str, now: datetime) -> None:
    """Node agents publishing zero demand through the last 15 minutes."""
    for minutes in (14, 10, 5, 1):
        cloud.put_metric(METRIC_DEMAND, stack, agent, 0, now - timedelta(minutes=minutes))


@pytest.fixture
def world(aws):
    """Fleets of two stacks plus untagged look-alikes; `now` is 30 minutes after they came up."""
    now = datetime.now(UTC) + timedelta(minutes=30)
    cloud.fleet("prod-router", "prod", "router", desired=2)
    cloud.fleet("prod-intake", "prod", "intake", desired=1)
    cloud.fleet("prod-silent", "prod", "silent", desired=1)
    cloud.fleet("prod-replica-busy", "prod", "summarise", desired=1)
    cloud.fleet("prod-warm", "prod", "triage", desired=2, min_size=1)
    cloud.fleet("prod-no-role", "prod", "router", desired=1, role=None)
    cloud.fleet("untagged", None, "router", desired=1)
    cloud.fleet("staging-router", "staging", "router", desired=1)
    # router: zero demand all window; intake: busy 5 min ago; summarise: busy, published with an
    # extra dimension per replica; silent: never published; warm: idle, but its plan keeps one
    # replica; staging: idle but another stack.
    for agent in ("router", "triage"):
        _quiet("prod", agent, now)
    _quiet("staging", "router", now)
    cloud.put_metric(METRIC_DEMAND, "prod", "intake", 3, now - timedelta(minutes=5))
    cloud.put_metric(METRIC_IN_FLIGHT, "prod", "summarise", 1, now - timedelta(minutes=2), {"InstanceId": "i-1"})
    return now


KEPT = ("prod-intake", "prod-silent", "prod-replica-busy", "prod-warm", "prod-no-role", "untagged", "staging-router")


def test_scales_exactly_the_idle_fleets_of_its_stack(world: datetime) -> None:
    before = {n: _state(n) for n in KEPT}
    reports = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: world)

    by_name = {r.fleet: r for r in reports}
    assert set(by_name) == {"prod-router", "prod-intake", "prod-silent", "prod-replica-busy", "prod-warm"}
    assert {n for n, r in by_name.items() if r.applied} == {"prod-router"}
    assert _state("prod-router") == (0, 0)
    assert by_name["prod-router"].datapoints == 4
    assert by_name["prod-router"].desired_before == 2
    assert "traffic" in by_name["prod-intake"].reason
    assert "traffic" in by_name["prod-replica-busy"].reason
    # Never published: kept, and the reason says where to look.
    silent = by_name["prod-silent"]
    assert silent.action == "keep"
    assert silent.datapoints == 0
    assert silent.reason.startswith("no demand data for 15 min while 1 instance(s) run: check the node agent's")
    # Idle, but the plan keeps a warm floor: neither MinSize nor DesiredCapacity is touched.
    warm = by_name["prod-warm"]
    assert warm.action == "keep"
    assert warm.reason == "the plan keeps 1 replica(s) warm (MinSize 1)"
    assert warm.datapoints == 4
    assert warm.peak_demand == 0
    assert {n: _state(n) for n in before} == before
    assert _state("prod-warm") == (1, 2)
    assert _state("prod-silent") == (0, 1)


def test_dry_run_changes_nothing(world: datetime) -> None:
    names = ["prod-router", *KEPT]
    before = {n: _state(n) for n in names}
    reports = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=True, clock=lambda: world)
    assert {r.fleet for r in reports if r.action == "scale-to-zero"} == {"prod-router"}
    assert not any(r.applied for r in reports)
    assert {n: _state(n) for n in names} == before


def test_treat_missing_as_idle_scales_the_silent_fleet_too(world: datetime) -> None:
    reports = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: world,
                   treat_missing_as_idle=True)
    by_name = {r.fleet: r for r in reports}
    assert {n for n, r in by_name.items() if r.applied} == {"prod-router", "prod-silent"}
    assert _state("prod-silent") == (0, 0)
    assert "treated as idle as asked" in by_name["prod-silent"].reason
    # The flag does not reach past the missing-data rule: traffic and the warm floor still keep.
    assert _state("prod-warm") == (1, 2)
    assert _state("prod-intake") == (0, 1)


def test_young_fleet_without_datapoints_is_kept(aws) -> None:
    cloud.fleet("prod-new", "prod", "router", desired=1)
    now = datetime.now(UTC) + timedelta(minutes=5)
    # Even with missing data taken for idle: a fleet this young may simply not be publishing yet.
    (report,) = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now,
                     treat_missing_as_idle=True)
    assert report.action == "keep"
    assert "less than the 15 min idle window" in report.reason
    assert _state("prod-new") == (0, 1)


def test_traffic_before_the_window_does_not_keep_a_fleet(aws) -> None:
    cloud.fleet("prod-router", "prod", "router", desired=1)
    now = datetime.now(UTC) + timedelta(minutes=60)
    cloud.put_metric(METRIC_DEMAND, "prod", "router", 7, now - timedelta(minutes=40))
    _quiet("prod", "router", now)
    (report,) = reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert report.applied
    assert _state("prod-router") == (0, 0)
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
             clock=lambda: world, treat_missing_as_idle=True)
    assert caught.value.exit_code == 5
    assert any("prod-silent" in d for d in caught.value.details)
    assert _state("prod-router") == (0, 0)
    assert _state("prod-silent") == (0, 1)


def test_all_updates_failing_is_a_failure(world: datetime) -> None:
    asg, ec2, cw = _clients()
    with pytest.raises(OperationFailed):
        reap(_FailingUpdates(asg, {"prod-silent", "prod-router"}), ec2, cw, stack="prod", idle_minutes=15,
             dry_run=False, clock=lambda: world, treat_missing_as_idle=True)


class _Ec2Lagging(AwsClient):
    """EC2 that does not describe the group's instances yet (eventual consistency)."""

    def paginate(self, method: str, result_key: str, **kwargs):
        return [] if method == "describe_instances" else super().paginate(method, result_key, **kwargs)


def test_instance_ec2_cannot_describe_counts_as_just_launched(aws) -> None:
    cloud.fleet("prod-router", "prod", "router", desired=1)
    asg, ec2, cw = _clients()
    now = datetime.now(UTC) + timedelta(hours=2)
    _quiet("prod", "router", now)
    (report,) = reap(asg, _Ec2Lagging(ec2.raw), cw, stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert report.action == "keep"
    assert "up for 0 min only" in report.reason
    assert _state("prod-router") == (0, 1)


class _ChangedMeanwhile(AwsClient):
    """Autoscaling whose group is changed by someone else between the reaper's read and its write."""

    def __init__(self, inner: AwsClient, change):
        super().__init__(inner.raw)
        self.change, self.changed = change, False

    def call(self, method: str, **kwargs):
        if method == "describe_auto_scaling_groups" and not self.changed:
            self.changed = True
            self.change(self.raw)
        return super().call(method, **kwargs)


def test_a_fleet_scaled_out_while_reaping_is_kept(aws) -> None:
    """Demand arrived meanwhile: the group scaled out."""
    cloud.fleet("prod-router", "prod", "router", desired=1)
    asg, ec2, cw = _clients()
    now = datetime.now(UTC) + timedelta(hours=2)
    _quiet("prod", "router", now)
    scale_out = _ChangedMeanwhile(asg, lambda raw: raw.set_desired_capacity(AutoScalingGroupName="prod-router", DesiredCapacity=3))
    (report,) = reap(scale_out, ec2, cw, stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert report.action == "keep"
    assert "scaled out to 3" in report.reason
    assert cloud.group("prod-router")["DesiredCapacity"] == 3


def test_a_floor_raised_while_reaping_is_kept(aws) -> None:
    cloud.fleet("prod-router", "prod", "router", desired=1)
    asg, ec2, cw = _clients()
    now = datetime.now(UTC) + timedelta(hours=2)
    _quiet("prod", "router", now)
    # A `deploy up` of a new plan gave the group a warm floor meanwhile.
    warm = _ChangedMeanwhile(asg, lambda raw: raw.update_auto_scaling_group(AutoScalingGroupName="prod-router", MinSize=1))
    (report,) = reap(warm, ec2, cw, stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert report.action == "keep"
    assert not report.applied
    assert "MinSize raised to 1" in report.reason
    assert _state("prod-router") == (1, 1)


def test_every_write_denied_is_exit_4(aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto enforcing IAM: the identity may read everything but not UpdateAutoScalingGroup."""
    cloud.fleet("prod-router", "prod", "router", desired=2)
    now = datetime.now(UTC) + timedelta(hours=1)
    _quiet("prod", "router", now)
    with cloud.identity_denied(aws.url, "autoscaling:UpdateAutoScalingGroup") as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(MissingDependency) as caught:
            reap(*_clients(), stack="prod", idle_minutes=15, dry_run=False, clock=lambda: now)
    assert caught.value.exit_code == 4
    assert "AWS denied autoscaling:UpdateAutoScalingGroup (AccessDenied)" in caught.value.message
    assert "grant autoscaling:UpdateAutoScalingGroup" in (caught.value.hint or "")
    assert any(d.startswith("prod-router: AWS denied") for d in caught.value.details)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert _state("prod-router") == (0, 2)
