"""The simulation's pieces, each against the rule its module states: the day's shape, arrivals,
the gateway's routing reasons and wake, the group's markets and drains, CloudWatch periods."""

from __future__ import annotations

import dataclasses
import random

import pytest

from agentdeploy.ops.simulate.cloudwatch import Alarm, MetricStore, StatSet, aggregate
from agentdeploy.ops.simulate.fleet import Group, GroupSpec
from agentdeploy.ops.simulate.gateway import GatewayWake, WakeRule, pick
from agentdeploy.ops.simulate.loop import TT_IN, TT_OUT, loop_alarms, modelled, tracking_capacity
from agentdeploy.ops.simulate.report import percentile
from agentdeploy.ops.simulate.traffic import daily_weights, every, hourly_rates, poisson_arrivals
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.stacks.scaling_rules import AlarmRule, MetricRule, fleet_rules


def _fleet(**changes: object) -> FleetPlan:
    base = dict(open_model="m", hf_repo="r", served_model_name="m", instance_type="g6.xlarge",
                instance_types=["g6.xlarge"], gpu="L4", on_demand_base_capacity=0, on_demand_percentage_above_base=0,
                min_replicas=0, max_replicas=4, peak_replicas=1, average_replicas=1.0, idle_minutes=15,
                active_hours_per_day=24.0, max_concurrency_per_replica=2, target_queue_per_replica=1.5,
                max_model_len=4096, cold_start_s=300.0, hourly_usd_on_demand=1.0, hourly_usd_spot=0.4)
    return FleetPlan.model_validate({**base, **changes})


def _group(od_base: int = 0, od_pct: int = 0, max_size: int = 4) -> Group:
    return Group(GroupSpec(0, max_size, od_base, od_pct, cold_start_s=300.0, routable_s=0.0, drain_s=120.0, notice_s=120.0))


# --- traffic ------------------------------------------------------------------------------------
def test_day_shape_keeps_the_peak_factor_and_the_mean() -> None:
    w = daily_weights(active_hours=8, peak_factor=2, hourly_shape=None)
    active = [x for x in w if x > 0]
    assert len(active) == 8 and w[:8] == [0.0] * 8  # centred on noon: 08:00-16:00 UTC
    assert sum(active) / len(active) == pytest.approx(1.0)
    assert max(active) == pytest.approx(2.0)  # the busiest hour at the peak factor
    assert daily_weights(24, 1, None) == [1.0] * 24
    assert daily_weights(24, 3, [0.0] * 12 + [1.0] * 12)[12] == pytest.approx(1.0)  # the user's own shape


def test_poisson_arrivals_follow_the_hourly_rates() -> None:
    rates = hourly_rates(24 * 3600, [1.0] * 12 + [0.0] * 12)  # 2 a second for 12 hours, then none
    times = poisson_arrivals(random.Random(1), rates, 0.0, 86400.0)
    assert len(times) == pytest.approx(86400, rel=0.02)
    assert max(times) < 12 * 3600 and times == sorted(times)
    assert every(60.0, 0.0, 3600.0) == [60.0 * i for i in range(60)]


# --- the gateway --------------------------------------------------------------------------------
def test_gateway_reasons() -> None:
    g = _group()
    assert pick([], 0, 2) == "cold_start"  # at zero
    g.set_desired(1)
    (node,) = g.reconcile(0.0)[0]
    assert pick(g.instances, 1, 2) == "cold_start"  # loading
    node.phase = "in_service"
    assert pick(g.instances, 1, 2) is node
    node.in_flight = 2
    assert pick(g.instances, 1, 2) == "overload"  # every serving node at its cap
    node.in_flight = 0
    replacement = g.interrupt(node, 10.0)
    assert node.phase == "draining" and replacement is not None and replacement.replaces_interrupted
    assert pick(g.instances, 1, 2) == "spot_loss"
    replacement.phase = "in_service"
    assert pick(g.instances, 1, 2) is replacement  # the draining node gets nothing new


def test_gateway_wake_is_rate_limited_and_only_from_zero() -> None:
    wake = GatewayWake(WakeRule(capacity=1, min_interval_s=30.0))
    assert wake.decide(desired=0, max_size=2, now=0.0) == 1
    assert wake.decide(desired=0, max_size=2, now=10.0) is None  # within the interval
    assert wake.decide(desired=1, max_size=2, now=40.0) is None  # already up
    assert wake.decide(desired=0, max_size=0, now=80.0) is None  # a group switched off stays off
    assert GatewayWake(None).decide(0, 2, 0.0) is None


# --- the group ----------------------------------------------------------------------------------
def test_markets_follow_the_mixed_instances_policy() -> None:
    g = _group(od_base=1, od_pct=50)
    g.set_desired(4)
    launched, _ = g.reconcile(0.0)
    assert [i.market for i in launched] == ["on_demand", "on_demand", "spot", "on_demand"]


def test_scale_in_drains_the_newest_and_bills_a_minute_at_least() -> None:
    g = _group()
    g.set_desired(2)
    old, new = g.reconcile(0.0)[0]
    old.phase = new.phase = "in_service"
    g.set_desired(1)
    _, drained = g.reconcile(30.0)
    assert drained == [new] and new.phase == "draining" and new.drain_deadline == 150.0
    g.terminate(new, 40.0)
    assert g.gpu_hours(3600.0) == {"spot": pytest.approx(1.0 + 60 / 3600), "on_demand": 0.0}
    assert (g.scale_out_events, g.scale_in_events) == (1, 1)


# --- CloudWatch and the loop --------------------------------------------------------------------
def test_statistic_sets_aggregate_like_cloudwatch() -> None:
    data = [StatSet(0.0, 3.0, 6.0, 12.0), StatSet.of(1.0)]
    assert aggregate(data, "Maximum") == 3.0
    assert aggregate(data, "Average") == pytest.approx(7.0 / 13.0)
    assert aggregate(data, "SampleCount") == 13.0
    assert aggregate([], "Maximum") is None  # missing, not zero


def test_alarm_reads_complete_periods_and_missing_data() -> None:
    metric = MetricRule(id="d", namespace="AgentDeploy", metric_name="Demand", dimensions="agent", stat="Maximum")
    rule = AlarmRule(key="idle", name_suffix="idle", description="", metrics=(metric,), expression=None, period_s=60,
                     evaluation_periods=3, datapoints_to_alarm=3, threshold=0, comparison="LessThanOrEqualToThreshold",
                     treat_missing_data="notBreaching", alarm_actions=("idle",))
    store, alarm = MetricStore(), Alarm(rule)
    for minute in range(3):
        store.put("AgentDeploy/Demand/agent", minute * 60.0, StatSet.of(0.0))
    assert alarm.evaluate(store, 175.0) == "OK"  # the third minute is not complete yet
    assert alarm.evaluate(store, 185.0) == "ALARM"
    assert alarm.evaluate(store, 245.0) == "OK"  # a missing minute is not idle


def test_target_tracking_gets_aws_managed_alarms() -> None:
    rules = fleet_rules(_fleet())
    alarms = {a.key: a for a in loop_alarms(rules)}
    high, low = alarms["demand-tracking-AlarmHigh"], alarms["demand-tracking-AlarmLow"]
    assert (high.evaluation_periods, high.threshold, high.alarm_actions) == (3, 1.5, (TT_OUT + "demand-tracking",))
    assert (low.evaluation_periods, low.threshold, low.alarm_actions) == (15, pytest.approx(1.35),
                                                                          (TT_IN + "demand-tracking",))
    assert {a.key for a in rules.alarms} <= set(alarms)  # every alarm the stack provisions
    assert tracking_capacity(serving=2, metric=3.0, target=1.5) == 4
    assert tracking_capacity(serving=0, metric=0.0, target=1.5) == 0


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 21)], 0.95) == 19.0


def test_a_definition_the_run_does_not_model_is_refused() -> None:
    """A new alarm metric or action must fail loudly, never read as "this alarm never fires"."""
    rules = fleet_rules(_fleet())
    policies = {p.key: p for p in rules.policies}
    modelled(rules, loop_alarms(rules), policies)  # every stack alarm is modelled
    cpu = MetricRule(id="cpu", namespace="AWS/EC2", metric_name="CPUUtilization", dimensions="group", stat="Average")
    odd = dataclasses.replace(rules.alarm("idle"), metrics=(cpu,), expression=None)
    with pytest.raises(ValueError, match="does not publish AWS/EC2/CPUUtilization/group"):
        modelled(rules, [odd], policies)
    with pytest.raises(ValueError, match="action 'nap' is no policy"):
        modelled(rules, [dataclasses.replace(rules.alarm("idle"), alarm_actions=("nap",))], policies)
