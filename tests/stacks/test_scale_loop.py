"""The scale loop's semantics, proven over minute datapoints with the stack's own rules.

`fleet_rules` gives the alarms and policies the stack provisions; stacks/alarm_eval.py
evaluates them as CloudWatch and EC2 Auto Scaling do; the node's published Demand comes from
the node agent's own window (serving/node/demand.py) fed with readings every 5 seconds. Each
scenario also runs against the rules as they were before (point samples, simple policies with
cooldowns) where that shows the test can fail."""

from __future__ import annotations

import dataclasses

import pytest

from agentdeploy.planner import build_plan, load_decision_file
from agentdeploy.serving.node.demand import DemandWindow
from agentdeploy.stacks.alarm_eval import (
    Series,
    State,
    Value,
    alarm_points,
    alarm_states,
    blocked_by_cooldown,
    compile_expression,
    cooldown_after,
    invocations,
    next_state,
    policy_capacity,
)
from agentdeploy.stacks.scaling_rules import ALERT, SILENT_MINUTES, AlarmRule, FleetRules, PolicyRule, fleet_rules
from tests.stacks.harness import EXAMPLES

DAY = 24 * 60


@pytest.fixture(scope="module")
def rules() -> FleetRules:
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"))
    fleet = next(a.fleet for a in plan.agents if a.fleet is not None)
    assert fleet.min_replicas == 0, "the scale-to-zero scenarios need a fleet that may reach zero"
    return fleet_rules(fleet)


# ---------------------------------------------------------------------- the node's signal
def trickle_minutes(minutes: int, poll_s: float, duration_s: float = 2.0) -> list[float]:
    """What one node publishes each minute (the window's Maximum) while one request of
    `duration_s` arrives each minute, at a different second each time (every phase against the
    readings), read every `poll_s` seconds by the agent, the last reading on the minute."""
    starts = [60.0 * m + (7.3 * m) % 60 for m in range(minutes)]

    def in_flight(t: float) -> float:
        return float(sum(1 for s in starts if s <= t < s + duration_s))

    def finished(t: float) -> float:
        return float(sum(1 for s in starts if s + duration_s <= t))

    out: list[float] = []
    window = DemandWindow()
    window.add(in_flight(0.0), finished(0.0))
    readings = round(60 / poll_s)
    for m in range(minutes):
        window = window.next()
        for i in range(1, readings + 1):
            t = 60.0 * m + i * poll_s
            window.add(in_flight(t), finished(t))
        stats = window.statistics()
        assert stats is not None
        out.append(stats.maximum)
    return out


def point_sample_minutes(minutes: int) -> list[float]:
    """The old signal: one reading of the gauges on each minute."""
    starts = [60.0 * m + (7.3 * m) % 60 for m in range(minutes)]
    return [float(sum(1 for s in starts if s <= 60.0 * (m + 1) < s + 2.0)) for m in range(minutes)]


def test_a_steady_trickle_never_reads_idle(rules) -> None:
    """One 2-second request a minute for a day: every minute's peak is 1, so the idle alarm
    never fires and the fleet is never scaled to zero."""
    idle = rules.alarm("idle")
    demand = trickle_minutes(DAY, rules.publishing.poll_interval_s)
    assert demand == [1.0] * DAY
    states = alarm_states(idle, alarm_points(idle, {"demand": demand, "unmet": [0.0] * DAY}))
    assert "ALARM" not in states
    assert not [i for i in invocations(idle, states) if i.action == "idle"]


def test_the_old_point_sample_would_have_churned(rules) -> None:
    """The same traffic read once a minute: mostly zeros, and the idle alarm fires (the failure
    the window fixes; also proof the evaluator can say ALARM)."""
    idle = rules.alarm("idle")
    demand = point_sample_minutes(DAY)
    states = alarm_states(idle, alarm_points(idle, {"demand": demand, "unmet": [0.0] * DAY}))
    assert sum(1 for s in states if s == "ALARM") > 0


# ---------------------------------------------------------------------- metrics outage
def test_an_hour_without_node_metrics_never_scales_in_and_says_the_fleet_went_silent(rules) -> None:
    idle, silent = rules.alarm("idle"), rules.alarm("silent")
    before, outage, after = [0.0] * 5, [None] * 60, [2.0] * 10  # busy nodes whose agents cannot publish
    demand: list[Value] = [*before, *outage, *after]
    n = len(demand)
    samples: list[Value] = [None if d is None else 12.0 for d in demand]
    series: Series = {"demand": demand, "unmet": [None] * n, "samples": samples,
                      "serving": [1.0] * n, "standby": [None] * n}
    idle_states = alarm_states(idle, alarm_points(idle, series))
    assert "ALARM" not in idle_states  # a gap is never idleness
    silent_states = alarm_states(silent, alarm_points(silent, series))
    first_alarm = silent_states.index("ALARM")
    assert first_alarm == len(before) + SILENT_MINUTES - 1
    assert all(s == "ALARM" for s in silent_states[first_alarm:len(before) + 60])
    alerts = [(i.period, i.state) for i in invocations(silent, silent_states) if i.action == ALERT]
    assert alerts == [(0, "OK"), (first_alarm, "ALARM"), (len(before) + 60, "OK")]  # told once, and once more when back


def test_missing_data_treated_as_breaching_would_scale_a_busy_fleet_in(rules) -> None:
    """The opposite rule (the defect this replaces): the same outage fires the idle alarm."""
    idle = dataclasses.replace(rules.alarm("idle"), treat_missing_data="breaching")
    demand: list[Value] = [2.0] * 5 + [None] * 60
    states = alarm_states(idle, alarm_points(idle, {"demand": demand, "unmet": [None] * len(demand)}))
    assert "ALARM" in states


# ---------------------------------------------------------------------- wake after idle
def run_loop(rules: FleetRules, demand: list[Value], unmet: list[Value], *, desired: int,
             policies: dict[str, PolicyRule] | None = None) -> list[int]:
    """Minute by minute: the alarms see this minute's datapoints (desired is the group's own
    metric, fed back), invoked policies change the group's desired capacity, simple policies
    wait out the group's cooldown. Returns desired capacity at the end of each minute."""
    policies = policies or {p.key: p for p in rules.policies if p.group == "main"}
    alarms = [rules.alarm("idle"), rules.alarm("wake")]
    states: dict[str, State] = {a.key: "INSUFFICIENT_DATA" for a in alarms}
    points: dict[str, list[Value]] = {a.key: [] for a in alarms}
    cooldown_until: float | None = None
    history: list[int] = []
    desired_series: list[Value] = []
    for t in range(len(demand)):
        desired_series.append(float(desired))
        series = {"demand": demand[: t + 1], "unmet": unmet[: t + 1], "desired": desired_series}
        for alarm in alarms:
            value = alarm_points(alarm, {m.id: series[m.id] for m in alarm.metrics})[-1]
            points[alarm.key].append(value)
            states[alarm.key] = next_state(alarm, points[alarm.key], states[alarm.key])
            if states[alarm.key] != "ALARM" or value is None:
                continue
            for key in alarm.alarm_actions:
                policy = policies[key]
                now_s = t * 60.0
                if blocked_by_cooldown(policy, now_s, cooldown_until):
                    continue
                wanted = policy_capacity(policy, current=desired, min_size=rules.min_replicas,
                                         max_size=rules.max_replicas, alarm=alarm, value=value)
                if wanted != desired:
                    desired = wanted
                    cooldown_until = cooldown_after(policy, now_s) or cooldown_until
        history.append(desired)
    return history


def _burst_after_idle(idle_minutes: int) -> tuple[list[Value], list[Value]]:
    """Nodes idle (explicit zeros) for the idle window, gone a minute after the scale-in, then
    a burst the gateway cannot serve (unmet demand) two minutes after the scale-in."""
    quiet: list[Value] = [0.0] * idle_minutes
    demand: list[Value] = [*quiet, 0.0, None, None, None, None, None, None, None]
    unmet: list[Value] = [0.0] * (idle_minutes + 2) + [5.0] * 6
    return demand, unmet


def test_a_burst_after_idle_wakes_at_once_no_cooldown_in_the_way(rules) -> None:
    idle_minutes = rules.alarm("idle").evaluation_periods
    demand, unmet = _burst_after_idle(idle_minutes)
    desired = run_loop(rules, demand, unmet, desired=1)
    scaled_in = desired.index(0)
    assert scaled_in == idle_minutes - 1  # after exactly the idle window of zeros
    burst = idle_minutes + 2
    assert desired[burst] == 1  # the minute the burst shows: 2 minutes after the scale-in
    assert all(d == 1 for d in desired[burst:])  # and the idle alarm never undoes it


def test_with_simple_policies_the_idle_cooldown_would_have_blocked_the_wake(rules) -> None:
    """The rule the step policies avoid: the same burst against the old simple policies (idle
    cooldown 300 s) waits out the cooldown."""
    old = {"wake": PolicyRule(key="wake", group="main", kind="simple", adjustment_type="ExactCapacity",
                              adjustment=1, cooldown_s=60),
           "idle": PolicyRule(key="idle", group="main", kind="simple", adjustment_type="ExactCapacity",
                              adjustment=0, cooldown_s=300)}
    idle_minutes = rules.alarm("idle").evaluation_periods
    demand, unmet = _burst_after_idle(idle_minutes)
    desired = run_loop(rules, demand, unmet, desired=1, policies=old)
    burst = idle_minutes + 2
    assert desired[burst] == 0
    assert desired.index(1, burst) == idle_minutes - 1 + 5  # five minutes after the scale-in


# ---------------------------------------------------------------------- the evaluator itself
def test_missing_data_treatments_follow_cloudwatch(rules) -> None:
    alarm = AlarmRule(key="t", name_suffix="t", description="", metrics=rules.alarm("idle").metrics[:1],
                      expression=None, period_s=60, evaluation_periods=3, datapoints_to_alarm=3, threshold=0,
                      comparison="LessThanOrEqualToThreshold", treat_missing_data="notBreaching", alarm_actions=())
    window: list[Value] = [0.0, None, 0.0]
    assert next_state(alarm, window, "OK") == "OK"
    assert next_state(dataclasses.replace(alarm, treat_missing_data="breaching"), window, "OK") == "ALARM"
    assert next_state(dataclasses.replace(alarm, treat_missing_data="missing"), [None] * 3, "OK") == "INSUFFICIENT_DATA"
    assert next_state(dataclasses.replace(alarm, treat_missing_data="ignore"), [None] * 3, "ALARM") == "ALARM"
    assert next_state(alarm, [0.0, 0.0, 0.0], "OK") == "ALARM"


def test_metric_math_fills_only_where_told() -> None:
    wake = compile_expression("IF(FILL(unmet, 0) > 0 AND desired < 1, 1, 0)")
    assert (wake({"unmet": None, "desired": 0.0}), wake({"unmet": 3.0, "desired": 0.0}),
            wake({"unmet": 3.0, "desired": 1.0}), wake({"unmet": 3.0, "desired": None})) == (0.0, 1.0, 0.0, None)
    with pytest.raises(ValueError, match="not modelled"):
        compile_expression("RATE(m)")


def test_policies_are_invoked_every_period_alerts_once(rules) -> None:
    idle = rules.alarm("idle")
    states: list[State] = ["OK", "ALARM", "ALARM", "OK"]
    assert [(i.period, i.action) for i in invocations(idle, states)] == [(1, "idle"), (2, "idle")]
    silent = rules.alarm("silent")
    assert [(i.period, i.state) for i in invocations(silent, states)] == [(0, "OK"), (1, "ALARM"), (3, "OK")]
