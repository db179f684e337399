"""The fleet's alarms and policies as the simulation runs them, from `FleetRules`.

The stack's own alarms come as they are. Target tracking is AWS's: it manages two alarms per
policy, high (above the target for 3 of 3 one-minute datapoints) and low (below 90% of it for
15 of 15), and sets ceil(serving x metric / target) within the group's bounds. Scale-in waits
until no instance is in its warm-up, and never removes the last instance: AWS removes capacity
only when the metric stays below the target afterwards, which no metric can say of an empty
fleet (scale to zero is the idle alarm's job). Step and simple policies are
`stacks.alarm_eval.policy_capacity`; cooldowns are `alarm_eval`'s too.
"""

from __future__ import annotations

import math

from agentdeploy.naming import METRIC_FLEET_SERVED, METRIC_NAMESPACE, METRIC_UNMET_DEMAND
from agentdeploy.ops.simulate.cloudwatch import metric_key
from agentdeploy.stacks.scaling_rules import (
    ALERT,
    AUTOSCALING_NAMESPACE,
    ELB_NAMESPACE,
    AlarmRule,
    FleetRules,
    PolicyRule,
)

#: AWS's managed target-tracking alarms (as `describe-alarms` shows them for a 1-minute metric).
TT_HIGH_DATAPOINTS = 3
TT_LOW_DATAPOINTS = 15
TT_LOW_FRACTION = 0.9
#: Action prefixes of the managed alarms: "tt-out:<policy key>", "tt-in:<policy key>".
TT_OUT, TT_IN = "tt-out:", "tt-in:"


def loop_alarms(rules: FleetRules) -> list[AlarmRule]:
    """The stack's alarms, then AWS's two managed alarms for each target-tracking policy."""
    out = list(rules.alarms)
    for p in rules.policies:
        if p.kind != "target-tracking" or p.metric is None or p.target_value is None:
            continue
        m = p.metric
        out.append(AlarmRule(
            key=f"{p.key}-AlarmHigh", name_suffix=f"TargetTracking-{p.key}-AlarmHigh",
            description="AWS-managed: scale out above the target", metrics=(m,), expression=None,
            period_s=m.period_s, evaluation_periods=TT_HIGH_DATAPOINTS, datapoints_to_alarm=TT_HIGH_DATAPOINTS,
            threshold=p.target_value, comparison="GreaterThanThreshold", treat_missing_data="missing",
            alarm_actions=(TT_OUT + p.key,)))
        if not p.scale_in_disabled:
            out.append(AlarmRule(
                key=f"{p.key}-AlarmLow", name_suffix=f"TargetTracking-{p.key}-AlarmLow",
                description="AWS-managed: scale in below 90% of the target", metrics=(m,), expression=None,
                period_s=m.period_s, evaluation_periods=TT_LOW_DATAPOINTS, datapoints_to_alarm=TT_LOW_DATAPOINTS,
                threshold=p.target_value * TT_LOW_FRACTION, comparison="LessThanThreshold",
                treat_missing_data="missing", alarm_actions=(TT_IN + p.key,)))
    return out


def tracking_capacity(serving: int, metric: float, target: float) -> int:
    """Target tracking's proportional capacity: ceil(serving x metric / target)."""
    return math.ceil(max(1, serving) * metric / target - 1e-9)


#: The metrics the run publishes (namespace/name/dimension set), each minute.
PUBLISHED = frozenset({
    f"{METRIC_NAMESPACE}/{METRIC_UNMET_DEMAND}/agent", f"{METRIC_NAMESPACE}/{METRIC_FLEET_SERVED}/agent",
    f"{AUTOSCALING_NAMESPACE}/GroupDesiredCapacity/group", f"{AUTOSCALING_NAMESPACE}/GroupInServiceInstances/group",
    f"{AUTOSCALING_NAMESPACE}/GroupDesiredCapacity/standby", f"{AUTOSCALING_NAMESPACE}/GroupInServiceInstances/standby",
    f"{ELB_NAMESPACE}/HealthyHostCount/target",
})


def modelled(rules: FleetRules, alarms: list[AlarmRule], policies: dict[str, PolicyRule]) -> None:
    """Refuse definitions the run does not model (a new metric or action would otherwise read as
    "never fires"): every alarm metric is published here, every action is a policy or an alert."""
    published = PUBLISHED | {f"{METRIC_NAMESPACE}/{rules.publishing.metric_name}/agent"}
    for alarm in alarms:
        for metric in alarm.metrics:
            if metric_key(metric) not in published:
                raise ValueError(f"alarm {alarm.key}: the simulation does not publish {metric_key(metric)}")
        for action in alarm.alarm_actions + alarm.ok_actions:
            if action != ALERT and not action.startswith((TT_OUT, TT_IN)) and action not in policies:
                raise ValueError(f"alarm {alarm.key}: action {action!r} is no policy of the fleet")
