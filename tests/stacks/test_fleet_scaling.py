"""A GPU fleet's scale loop as the stack registers it equals `fleet_rules` (the definitions
`deploy simulate` evaluates), and those rules read honest signals: target tracking only the
nodes' Demand, the wake the gateway's UnmetDemand, idleness only explicit zeros, a silent
fleet an alert, and nothing on the spot group waits for a cooldown."""

from __future__ import annotations

import pytest

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_DEMAND, METRIC_NAMESPACE, METRIC_UNMET_DEMAND
from agentdeploy.serving.node.cli import parse_args
from agentdeploy.stacks.scaling_rules import (
    ALERT,
    AlarmRule,
    FleetRules,
    PolicyRule,
    expression_id,
    fleet_rules,
    standby_group_name,
)
from tests.stacks.harness import Recorded, mixed_plan, run_mixed

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
POLICY = "aws:autoscaling/policy:Policy"
HOOK = "aws:autoscaling/lifecycleHook:LifecycleHook"
ARN = "arn:aws:policy:us-east-1:123456789012:"


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return mixed_plan(tmp_path_factory.mktemp("scaling"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_mixed(tmp_path_factory.mktemp("scaling-run"))


@pytest.fixture(scope="module")
def agent(plan):
    return next(a for a in plan.agents if a.route == "gpu")


@pytest.fixture(scope="module")
def rules(agent) -> FleetRules:
    return fleet_rules(agent.fleet)


def _group(agent) -> str:
    return f"agentdeploy-test-{agent.name}"


def _alarm(run, name: str) -> Recorded:
    found = [r for r in run.mocks.of_type(ALARM) if r.inputs.get("name") == name]
    assert len(found) == 1, f"expected one alarm named {name}, found {len(found)}"
    return found[0]


def _policies_by_key(run, rules: FleetRules) -> dict[str, Recorded]:
    out = {}
    for rule in rules.policies:
        found = [r for r in run.mocks.of_type(POLICY) if r.name.endswith(f"-{rule.key}") and "router" in r.name]
        assert len(found) == 1, (rule.key, [r.name for r in found])
        out[rule.key] = found[0]
    return out


def _action_arns(run, rules: FleetRules, keys: tuple[str, ...]) -> list[str]:
    topic = run.mocks.one("aws:sns/topic:Topic")
    policies = _policies_by_key(run, rules)
    return [f"arn:aws:topic:us-east-1:123456789012:{topic.name}" if k == ALERT else ARN + policies[k].name
            for k in keys]


def _dims(rule_dims: str, agent) -> dict[str, str] | None:
    return {"agent": {DIM_STACK: "test", DIM_AGENT: agent.name},
            "group": {"AutoScalingGroupName": _group(agent)},
            "standby": {"AutoScalingGroupName": standby_group_name(_group(agent))}}.get(rule_dims)


def _check_alarm(run, rules: FleetRules, rule: AlarmRule, agent) -> None:
    alarm = _alarm(run, f"{_group(agent)}-{rule.name_suffix}").inputs
    assert (alarm["comparisonOperator"], alarm["threshold"], alarm["evaluationPeriods"], alarm["datapointsToAlarm"],
            alarm["treatMissingData"]) == (rule.comparison, rule.threshold, rule.evaluation_periods,
                                           rule.datapoints_to_alarm, rule.treat_missing_data), rule.key
    assert alarm["alarmActions"] == _action_arns(run, rules, rule.alarm_actions), rule.key
    assert alarm.get("okActions", []) == _action_arns(run, rules, rule.ok_actions), rule.key
    if rule.expression is None:
        only = rule.metrics[0]
        assert (alarm["namespace"], alarm["metricName"], alarm["statistic"], alarm["period"], alarm["dimensions"]) == (
            only.namespace, only.metric_name, only.stat, rule.period_s, _dims(only.dimensions, agent)), rule.key
        return
    queries = alarm["metricQueries"]
    metrics = [(q["id"], q["metric"]["namespace"], q["metric"]["metricName"], q["metric"]["stat"], q["metric"]["period"])
               for q in queries if q.get("metric")]
    assert metrics == [(m.id, m.namespace, m.metric_name, m.stat, m.period_s) for m in rule.metrics], rule.key
    for q, m in zip([q for q in queries if q.get("metric")], rule.metrics, strict=True):
        if m.dimensions != "target":  # the target group's dimensions are outputs of the load balancer
            assert q["metric"]["dimensions"] == _dims(m.dimensions, agent), (rule.key, m.id)
    returned = [q for q in queries if q["returnData"]]
    assert [(q["id"], q["expression"]) for q in returned] == [(expression_id(rule), rule.expression)], rule.key


def test_every_alarm_the_stack_registers_is_its_rule(run, rules, agent) -> None:
    for rule in rules.alarms:
        _check_alarm(run, rules, rule, agent)
    fleet_alarms = [r for r in run.mocks.of_type(ALARM) if r.name.startswith(f"fleet-{agent.name}-")]
    assert sorted(r.inputs["name"] for r in fleet_alarms) == sorted(
        f"{_group(agent)}-{a.name_suffix}" for a in rules.alarms)  # nothing beside the rules


def _check_policy(recorded: Recorded, rule: PolicyRule, agent) -> None:
    p = recorded.inputs
    group = _group(agent) if rule.group == "main" else standby_group_name(_group(agent))
    assert p["autoscalingGroupName"] == group
    kind = {"target-tracking": "TargetTrackingScaling", "step": "StepScaling", "simple": "SimpleScaling"}[rule.kind]
    assert p["policyType"] == kind, rule.key
    if rule.kind == "target-tracking":
        assert rule.metric is not None
        conf = p["targetTrackingConfiguration"]
        spec = conf["customizedMetricSpecification"]
        assert (conf["targetValue"], conf["disableScaleIn"], p["estimatedInstanceWarmup"]) == (
            rule.target_value, rule.scale_in_disabled, rule.warmup_s)
        assert (spec["namespace"], spec["metricName"], spec["statistic"]) == (
            rule.metric.namespace, rule.metric.metric_name, rule.metric.stat)
        assert {d["name"]: d["value"] for d in spec["metricDimensions"]} == _dims(rule.metric.dimensions, agent)
    elif rule.kind == "step":
        assert p["adjustmentType"] == rule.adjustment_type
        assert p.get("estimatedInstanceWarmup") == rule.warmup_s
        steps = [(None if s.get("metricIntervalLowerBound") is None else float(s["metricIntervalLowerBound"]),
                  None if s.get("metricIntervalUpperBound") is None else float(s["metricIntervalUpperBound"]),
                  s["scalingAdjustment"]) for s in p["stepAdjustments"]]
        assert steps == [(s.lower, s.upper, s.adjustment) for s in rule.steps], rule.key
        assert "cooldown" not in p
    else:
        assert (p["adjustmentType"], p["scalingAdjustment"], p["cooldown"]) == (
            rule.adjustment_type, rule.adjustment, rule.cooldown_s), rule.key


def test_every_policy_the_stack_registers_is_its_rule(run, rules, agent) -> None:
    registered = _policies_by_key(run, rules)
    for rule in rules.policies:
        _check_policy(registered[rule.key], rule, agent)
    assert len([r for r in run.mocks.of_type(POLICY) if agent.name in r.name]) == len(rules.policies)


def test_both_groups_carry_the_rules_hooks(run, rules, agent) -> None:
    hooks = {(h.inputs["autoscalingGroupName"], h.inputs["name"], h.inputs["lifecycleTransition"],
              h.inputs["heartbeatTimeout"], h.inputs["defaultResult"]) for h in run.mocks.of_type(HOOK)}
    for group in (_group(agent), standby_group_name(_group(agent))):
        assert {(group, h.name, h.transition, h.timeout_s, h.default_result) for h in rules.hooks} <= hooks
    # Without the stack's hook timeout, the rules derive the same one (what `deploy simulate` uses).
    assert fleet_rules(agent.fleet).hooks == rules.hooks


def test_the_standby_group_is_sized_by_the_rules(run, rules, agent) -> None:
    standby = run.mocks.one("aws:autoscaling/group:Group", "ondemand-asg").inputs
    assert (standby["name"], standby["minSize"], standby["maxSize"]) == (
        standby_group_name(_group(agent)), 0, rules.standby.max_size)
    assert rules.policy("ondemand-fill").adjustment == rules.standby.size
    assert rules.alarm("spot-starved").evaluation_periods == rules.standby.starved_minutes


# ---------------------------------------------------------------------- what the rules say
def test_target_tracking_reads_only_the_nodes_demand(rules) -> None:
    tracking = rules.policy("demand-tracking")
    assert tracking.metric is not None
    assert (tracking.metric.namespace, tracking.metric.metric_name, tracking.metric.dimensions) == (
        METRIC_NAMESPACE, METRIC_DEMAND, "agent")
    # Average over the nodes' statistic sets: the time-averaged load per node.
    assert tracking.metric.stat == "Average"
    assert rules.publishing.published_as == "statistic-set"


def test_the_wake_reads_the_gateways_unmet_demand_never_the_node_signal(rules) -> None:
    wake = rules.alarm("wake")
    assert {m.metric_name for m in wake.metrics} == {METRIC_UNMET_DEMAND, "GroupDesiredCapacity"}
    assert (wake.evaluation_periods, wake.datapoints_to_alarm, wake.period_s) == (1, 1, 60)
    assert wake.alarm_actions == ("wake",)


def test_idle_needs_explicit_zeros_missing_data_is_never_idle(rules, agent) -> None:
    idle = rules.alarm("idle")
    # The alarm's breach means idle, so missing data must not breach.
    assert (idle.comparison, idle.threshold, idle.treat_missing_data) == ("LessThanOrEqualToThreshold", 0, "notBreaching")
    assert idle.evaluation_periods == idle.datapoints_to_alarm == agent.fleet.idle_minutes
    demand = next(m for m in idle.metrics if m.metric_name == METRIC_DEMAND)
    assert demand.stat == "Maximum"  # the interval's peak: one short request is not idle
    assert idle.alarm_actions == ("idle",)


def test_a_silent_fleet_alerts_and_never_scales(rules) -> None:
    silent = rules.alarm("silent")
    assert silent.alarm_actions == (ALERT,) and silent.ok_actions == (ALERT,)
    assert {m.metric_name: m.stat for m in silent.metrics if m.namespace == METRIC_NAMESPACE} == {
        METRIC_DEMAND: "SampleCount"}
    assert silent.evaluation_periods <= rules.alarm("idle").evaluation_periods  # told before idle could be judged


def test_no_cooldown_can_block_a_wake(rules, run, agent) -> None:
    """Only simple scaling waits out cooldowns (EC2 Auto Scaling User Guide, Scaling cooldowns),
    so the spot group has no simple policy at all: the wake, the idle scale-in and tracking
    are step and target tracking. The standby's simple policies act on a group no other
    policy scales."""
    main = [p for p in rules.policies if p.group == "main"]
    assert {p.key: p.kind for p in main} == {"demand-tracking": "target-tracking", "wake": "step", "idle": "step"}
    assert all(p.cooldown_s is None for p in main)
    registered = _policies_by_key(run, rules)
    assert {registered[p.key].inputs["policyType"] for p in main} == {"TargetTrackingScaling", "StepScaling"}


def test_the_node_agent_defaults_are_what_the_rules_assume(rules) -> None:
    args = parse_args(["--stack", "s", "--agent", "a"], {})
    assert (args.demand_poll_s, args.metrics_interval_s) == (
        rules.publishing.poll_interval_s, rules.publishing.publish_interval_s)
    assert rules.publishing.metric_name == METRIC_DEMAND and rules.publishing.publishes_zero


# ---------------------------------------------------------------------- AWS's limits
def _example_rules() -> list[tuple[str, FleetRules]]:
    from agentdeploy.planner import build_plan, load_decision_file
    from tests.stacks.harness import EXAMPLES

    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for a in build_plan(load_decision_file(path)).agents:
            if a.fleet is not None:
                out.append((f"{path.name}:{a.name}", fleet_rules(a.fleet)))
    assert out, "no example has a GPU fleet"
    return out


@pytest.mark.parametrize("where, example", _example_rules())
def test_every_alarm_fits_cloudwatchs_limits(where: str, example: FleetRules) -> None:
    """PutMetricAlarm: metric-math ids start with a lower-case letter (then letters, digits,
    underscores); EvaluationPeriods x Period is at most one day; DatapointsToAlarm at most
    EvaluationPeriods; periods of alarms on high-resolution-less metrics are multiples of 60."""
    import re

    for rule in example.alarms:
        ids = [m.id for m in rule.metrics] + ([expression_id(rule)] if rule.expression else [])
        assert all(re.fullmatch(r"[a-z][a-zA-Z0-9_]*", i) for i in ids), (where, rule.key, ids)
        assert len(set(ids)) == len(ids), (where, rule.key)
        assert rule.evaluation_periods * rule.period_s <= 86400, (where, rule.key)
        assert 1 <= rule.datapoints_to_alarm <= rule.evaluation_periods, (where, rule.key)
        assert rule.period_s % 60 == 0 and all(m.period_s == rule.period_s for m in rule.metrics), (where, rule.key)
