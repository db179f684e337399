"""GPU hours of instances terminated long ago come from the scaling activity history.

EC2 forgets a terminated instance after about an hour; Auto Scaling's activity history keeps six
weeks. moto's DescribeScalingActivities answers an empty list, so the activities here are written
in the shape AWS documents (Description "Launching a new EC2 instance: i-...", StatusCode,
StartTime, EndTime); the groups, instances and everything else are moto's.

Hand arithmetic: g6.xlarge on-demand $0.8048/h (catalog).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentdeploy.ops.aws import AwsClient, AwsSession
from agentdeploy.ops.cost_sources import collect_report
from agentdeploy.ops.gpu_history import gone_instance_usage
from agentdeploy.planner import build_plan, load_catalog, load_decision_file

from . import cloud

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 10, tzinfo=UTC)


def _act(description: str, start: datetime, end: datetime | None, status: str = "Successful") -> dict:
    return {"ActivityId": "a", "AutoScalingGroupName": "g", "Description": description, "Cause": "test",
            "StartTime": start, "EndTime": end, "StatusCode": status, "Progress": 100}


def test_gone_instances_are_counted_from_launch_to_termination() -> None:
    activities = [  # newest first, as AWS answers
        _act("Terminating EC2 instance: i-0aaa", T0 + timedelta(hours=5), T0 + timedelta(hours=5, minutes=30)),
        _act("Launching a new EC2 instance: i-0bbb", T0 + timedelta(hours=4), T0 + timedelta(hours=4, minutes=1)),
        _act("Terminating EC2 instance: i-0ccc", T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=1)),
        _act("Launching a new EC2 instance: i-0ddd", T0 + timedelta(hours=2), None, status="Failed"),
        _act("Launching a new EC2 instance: i-0aaa", T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=1)),
        _act("Launching a new EC2 instance: i-0ccc", T0 - timedelta(hours=2), T0 - timedelta(hours=2)),
        _act("Launching a new EC2 instance: i-0eee", T0, T0),
        _act("Terminating EC2 instance: i-0eee", T0 + timedelta(hours=2), T0 + timedelta(hours=2)),
    ]
    since, until = T0, T0 + timedelta(days=1)
    usages, warnings = gone_instance_usage(activities, {"i-0eee"}, "router", "g6.xlarge", since, until)
    hours = {u.instance_id: u.hours for u in usages}
    # i-0aaa: 1 h -> 5.5 h = 4.5 h; i-0ccc: launched before the period, clipped: 0 -> 3 h 1 min;
    # i-0eee: EC2 still lists it (its own figures count); i-0bbb: still running, EC2 lists it or it is lost.
    assert hours == {"i-0aaa": pytest.approx(4.5), "i-0ccc": pytest.approx(3 + 1 / 60)}
    assert all(u.agent == "router" and u.instance_type == "g6.xlarge" and not u.spot and u.ended for u in usages)
    assert warnings == ["i-0bbb: launched, never seen terminating, and not listed by EC2; not counted"]


class _WithHistory(AwsClient):
    """moto's Auto Scaling, with the activity history moto does not keep."""

    def __init__(self, inner: AwsClient, activities: list[dict]):
        super().__init__(inner.raw)
        self.activities = activities

    def paginate(self, method: str, result_key: str, **kwargs):
        if method == "describe_scaling_activities":
            return self.activities
        return super().paginate(method, result_key, **kwargs)


def test_cost_counts_instances_ec2_forgot(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    catalog = load_catalog()
    plan = build_plan(load_decision_file(ROOT / "examples" / "high-volume-router.yaml"), catalog)
    fleet = plan.agent("ticket-router").fleet
    assert fleet is not None
    cloud.fleet("router-tr", plan.stack, "ticket-router", desired=0, instance_type=fleet.instance_type)
    since, until = T0, T0 + timedelta(days=1)
    history = [
        _act("Terminating EC2 instance: i-0f00", T0 + timedelta(hours=12), T0 + timedelta(hours=12)),
        _act("Launching a new EC2 instance: i-0f00", T0 + timedelta(hours=2), T0 + timedelta(hours=2)),
    ]
    session = AwsSession()
    report = collect_report(plan, catalog, plan.stack, since, until, session.client("ec2"), session.client("cloudwatch"),
                            None, threshold=0.25, autoscaling=_WithHistory(session.client("autoscaling"), history))
    router = next(a for a in report.agents if a.agent == "ticket-router")
    price = catalog.gpu_instances[fleet.instance_type].on_demand_usd_per_hour
    assert router.gpu_on_demand_hours == pytest.approx(10.0)
    assert router.gpu_usd == pytest.approx(10 * price)
    assert any(w.startswith("router-tr: 10.00 h of instances EC2 no longer lists") for w in report.warnings)
