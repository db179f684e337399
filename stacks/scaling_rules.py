"""Every definition of a GPU fleet's scale loop, as data (pure: no Pulumi, no AWS).

The stack builds its alarms, scaling policies, standby group and lifecycle hooks from
`fleet_rules(fleet)` (stacks/components/fleet_scaling.py, fleet_fallback.py), the node agent's
publishing settings match `NodePublishing`, and `deploy simulate` evaluates the very same
`AlarmRule`s and `PolicyRule`s (stacks/alarm_eval.py): one source of truth, so the simulation
cannot drift from what `pulumi up` provisions.

Field names are stable: consumers read them; new facts arrive as new fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agentdeploy.naming import METRIC_DEMAND, METRIC_NAMESPACE, METRIC_UNMET_DEMAND
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.serving.node.drain import HOOK_HEARTBEAT_EXTRA_S

Comparison = Literal["GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold",
                     "LessThanOrEqualToThreshold"]
MissingData = Literal["breaching", "notBreaching", "ignore", "missing"]
Statistic = Literal["Average", "Maximum", "Minimum", "Sum", "SampleCount"]
#: Which dimension set the stack fills in for a metric: {Stack, Agent} ("agent"), the spot
#: group's name ("group"), the on-demand standby's ("standby"), the fleet's target group and
#: load balancer ("target"). The rules do not know resource names; the stack does.
DimensionSet = Literal["agent", "group", "standby", "target"]
GroupRole = Literal["main", "standby"]
PolicyKind = Literal["target-tracking", "simple", "step"]

#: An alarm action that notifies the stack's SNS topic instead of scaling.
ALERT = "alert"
AUTOSCALING_NAMESPACE = "AWS/AutoScaling"
ELB_NAMESPACE = "AWS/ApplicationELB"
#: Every metric of the loop is read per minute (nodes publish each minute; group metrics are
#: enabled at 1-minute granularity).
PERIOD_S = 60

#: AWS's longest lifecycle hook heartbeat timeout (PutLifecycleHook HeartbeatTimeout).
MAX_HOOK_TIMEOUT_S = 7200
#: Minutes the main group may want capacity with none in service before on-demand steps in:
#: longer than a spot request takes to be fulfilled or refused (minutes), shorter than a user
#: would accept Claude-only service for a self-hosted agent.
STARVED_MINUTES = 10
#: The on-demand standby group's name is the spot group's plus this.
STANDBY_SUFFIX = "-ondemand"
#: Minutes of nodes in service with no Demand datapoint before the fleet-silent alert: a node
#: agent publishes every minute, so five silent minutes are a fault, not a delay.
SILENT_MINUTES = 5
#: Seconds between the node agent's reads of vLLM's load: a request shorter than this can fall
#: between reads, so the agent also counts requests vLLM finished in the interval.
DEMAND_POLL_S = 5.0
#: The lifecycle hooks' names (the node agent completes them by name).
READY_HOOK = "ready"
DRAIN_HOOK = "drain"
#: The fleet's target group health check on the node agent's /healthz: a registered node is
#: healthy after TARGET_HEALTHY_THRESHOLD checks TARGET_HEALTH_INTERVAL_S apart (discovery and
#: `deploy simulate` count on it).
TARGET_HEALTH_INTERVAL_S = 15
TARGET_HEALTH_TIMEOUT_S = 5
TARGET_HEALTHY_THRESHOLD = 2
TARGET_UNHEALTHY_THRESHOLD = 3


@dataclass(frozen=True)
class MetricRule:
    """One metric an alarm or policy reads (`id` names it inside a metric-math expression)."""

    id: str
    namespace: str
    metric_name: str
    dimensions: DimensionSet
    stat: Statistic
    period_s: int = PERIOD_S


@dataclass(frozen=True)
class AlarmRule:
    """A CloudWatch metric alarm: alone on `metrics[0]` when `expression` is None, else metric
    math over `metrics` whose single returned series is `expression`."""

    #: Pulumi logical name suffix (kept stable: it is part of the resource's URN).
    key: str
    #: The alarm's AWS name is "<spot group name>-<name_suffix>".
    name_suffix: str
    description: str
    metrics: tuple[MetricRule, ...]
    expression: str | None
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: Comparison
    treat_missing_data: MissingData
    #: Policy keys (PolicyRule.key) or ALERT, invoked on ALARM / on OK.
    alarm_actions: tuple[str, ...]
    ok_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepRule:
    """One step of a step scaling policy: bounds on (metric - threshold); None is infinity."""

    lower: float | None
    upper: float | None
    adjustment: int


@dataclass(frozen=True)
class PolicyRule:
    """An Auto Scaling policy on the spot group ("main") or the on-demand standby."""

    key: str
    group: GroupRole
    kind: PolicyKind
    #: "ExactCapacity" / "ChangeInCapacity" (simple and step); None for target tracking.
    adjustment_type: str | None = None
    #: Simple scaling's adjustment.
    adjustment: int | None = None
    steps: tuple[StepRule, ...] = ()
    #: Simple scaling only: AWS pauses every later *simple* policy of the group this long.
    cooldown_s: int | None = None
    #: Estimated instance warm-up (target tracking, step).
    warmup_s: int | None = None
    target_value: float | None = None
    metric: MetricRule | None = None
    scale_in_disabled: bool = False


@dataclass(frozen=True)
class NodePublishing:
    """How each node agent publishes the fleet's demand (serving/node/agent.py)."""

    metric_name: str
    #: How often the agent reads vLLM's load.
    poll_interval_s: float
    #: How often it publishes what it read.
    publish_interval_s: float
    #: What one published datum is: "sample" (one reading), "statistic-set" (min, max, sum
    #: and count of the interval's readings: Maximum is the interval's peak).
    published_as: Literal["sample", "statistic-set"]
    #: Whether an idle node publishes an explicit 0 (idleness as evidence, not as silence).
    publishes_zero: bool


@dataclass(frozen=True)
class StandbyRule:
    """The on-demand standby group a starved spot fleet falls back to (fleet_fallback.py)."""

    starved_minutes: int
    size: int
    max_size: int


@dataclass(frozen=True)
class HookRule:
    name: str
    transition: str
    timeout_s: int
    default_result: str


@dataclass(frozen=True)
class FleetRules:
    min_replicas: int
    max_replicas: int
    alarms: tuple[AlarmRule, ...]
    policies: tuple[PolicyRule, ...]
    publishing: NodePublishing
    standby: StandbyRule
    hooks: tuple[HookRule, ...]

    def alarm(self, key: str) -> AlarmRule:
        return next(a for a in self.alarms if a.key == key)

    def policy(self, key: str) -> PolicyRule:
        return next(p for p in self.policies if p.key == key)

    def hook(self, name: str) -> HookRule:
        return next(h for h in self.hooks if h.name == name)


def standby_group_name(main_group: str) -> str:
    return f"{main_group}{STANDBY_SUFFIX}"


def expression_id(rule: AlarmRule) -> str:
    """The id of an alarm's returned expression (metric-math ids: a lower-case letter, then
    letters, digits and underscores)."""
    return rule.key.replace("-", "_")


def scaling_warmup_s(cold_start_s: float) -> int:
    """The plan's cold start plus half again, at least five minutes (scaling warm-up)."""
    return max(300, math.ceil(cold_start_s * 1.5))


def ready_hook_timeout_s(cold_start_s: float) -> int:
    """How long a launching node may take to turn healthy before the group abandons it: twice
    the plan's cold start (at least 15 minutes), within AWS's 2-hour heartbeat limit."""
    return min(MAX_HOOK_TIMEOUT_S, max(900, math.ceil(cold_start_s * 2)))


def drain_hook_timeout_s(fleet: FleetPlan) -> int:
    """The drain hook's heartbeat: vLLM's shutdown timeout plus the node agent's own allowance
    before SIGTERM and after vLLM exits (serving/node/drain.py)."""
    return math.ceil(fleet.shutdown_timeout_s + HOOK_HEARTBEAT_EXTRA_S)


def never_healthy_minutes(launch_hook_timeout_s: int) -> int:
    """Longer than the ready hook lets a node take to turn healthy."""
    return math.ceil(launch_hook_timeout_s / 60) + 5


def _metric(id_: str, name: str, dims: DimensionSet, stat: Statistic, namespace: str = METRIC_NAMESPACE) -> MetricRule:
    return MetricRule(id=id_, namespace=namespace, metric_name=name, dimensions=dims, stat=stat)


def fleet_rules(fleet: FleetPlan) -> FleetRules:
    """The scale loop of one fleet, every number from its plan.

    - Target tracking reads only the nodes' Demand (its Average over the nodes' statistic sets
      is the time-averaged load per node); the gateway's counts live under metrics of their own.
    - Wake (the backup to the gateway raising desired capacity itself): the gateway reported
      unmet demand while the group wants nothing.
    - Idle needs evidence: `idle_minutes` of explicit zeros from the nodes and no unmet demand
      from the gateway; a missing minute is not idle (notBreaching: the alarm's breach means
      idle, so missing data never breaches).
    - Silent: nodes in service but no Demand datapoint for SILENT_MINUTES: an alert, never a
      scaling action (a blind fleet is kept, and someone is told).
    - No cooldown blocks a wake: the spot group's wake and idle policies are step scaling, which
      EC2 Auto Scaling never holds for a cooldown; only simple scaling waits out cooldowns
      ("After your Auto Scaling group launches or terminates instances, it waits for a cooldown
      period to end before any further scaling activities initiated by simple scaling policies
      can start"; "Target tracking and step scaling policies can initiate a scale-out activity
      immediately without waiting for the cooldown period to end": EC2 Auto Scaling User Guide,
      Scaling cooldowns). The only simple policies left act on the standby group, which no
      other policy scales.
    """
    hook_s = ready_hook_timeout_s(fleet.cold_start_s)
    wake_size = max(1, fleet.min_replicas)
    warmup_s = scaling_warmup_s(fleet.cold_start_s)
    desired = _metric("desired", "GroupDesiredCapacity", "group", "Maximum", AUTOSCALING_NAMESPACE)
    unmet = _metric("unmet", METRIC_UNMET_DEMAND, "agent", "Sum")
    stuck_minutes = never_healthy_minutes(hook_s)

    policies = (
        PolicyRule(key="demand-tracking", group="main", kind="target-tracking", warmup_s=warmup_s,
                   target_value=fleet.target_queue_per_replica,
                   metric=_metric("demand", METRIC_DEMAND, "agent", "Average")),
        PolicyRule(key="wake", group="main", kind="step", adjustment_type="ExactCapacity",
                   steps=(StepRule(lower=0.0, upper=None, adjustment=wake_size),), warmup_s=warmup_s),
        PolicyRule(key="idle", group="main", kind="step", adjustment_type="ExactCapacity",
                   steps=(StepRule(lower=None, upper=0.0, adjustment=fleet.min_replicas),)),
        PolicyRule(key="ondemand-fill", group="standby", kind="simple", adjustment_type="ExactCapacity",
                   adjustment=wake_size, cooldown_s=60),
        PolicyRule(key="ondemand-empty", group="standby", kind="simple", adjustment_type="ExactCapacity",
                   adjustment=0, cooldown_s=60),
    )
    alarms = (
        AlarmRule(
            key="wake", name_suffix="wake-from-zero",
            description=f"the gateway had demand it could not serve while the fleet is at zero -> start {wake_size} replica(s)",
            metrics=(unmet, desired), expression="IF(FILL(unmet, 0) > 0 AND desired < 1, 1, 0)",
            period_s=PERIOD_S, evaluation_periods=1, datapoints_to_alarm=1, threshold=1,
            comparison="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching", alarm_actions=("wake",)),
        AlarmRule(
            key="idle", name_suffix="idle-scale-to-zero",
            description=(f"nodes reported zero demand and the gateway none unmet for {fleet.idle_minutes} min "
                         f"-> scale to {fleet.min_replicas} (missing data is never idle)"),
            metrics=(_metric("demand", METRIC_DEMAND, "agent", "Maximum"), unmet),
            expression="IF(FILL(unmet, 0) > 0, 1, demand)", period_s=PERIOD_S,
            evaluation_periods=fleet.idle_minutes, datapoints_to_alarm=fleet.idle_minutes, threshold=0,
            comparison="LessThanOrEqualToThreshold", treat_missing_data="notBreaching", alarm_actions=("idle",)),
        AlarmRule(
            key="silent", name_suffix="fleet-silent",
            description=(f"nodes in service but no demand published for {SILENT_MINUTES} min: the idle decision "
                         "is blind (node agents down or unable to publish); the fleet is kept"),
            metrics=(_metric("serving", "GroupInServiceInstances", "group", "Maximum", AUTOSCALING_NAMESPACE),
                     _metric("standby", "GroupInServiceInstances", "standby", "Maximum", AUTOSCALING_NAMESPACE),
                     _metric("samples", METRIC_DEMAND, "agent", "SampleCount")),
            expression="IF(FILL(serving, 0) + FILL(standby, 0) >= 1 AND FILL(samples, 0) < 1, 1, 0)",
            period_s=PERIOD_S, evaluation_periods=SILENT_MINUTES, datapoints_to_alarm=SILENT_MINUTES, threshold=1,
            comparison="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching",
            alarm_actions=(ALERT,), ok_actions=(ALERT,)),
        AlarmRule(
            key="never-healthy", name_suffix="never-healthy",
            description=f"the fleet wants capacity but has had no healthy node for {stuck_minutes} min",
            metrics=(desired, _metric("healthy", "HealthyHostCount", "target", "Maximum", ELB_NAMESPACE)),
            expression="IF(desired >= 1 AND FILL(healthy, 0) < 1, 1, 0)", period_s=PERIOD_S,
            evaluation_periods=stuck_minutes, datapoints_to_alarm=stuck_minutes, threshold=1,
            comparison="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching", alarm_actions=(ALERT,)),
        AlarmRule(
            key="spot-starved", name_suffix="spot-starved",
            description=(f"the spot group wanted capacity with none in service for {STARVED_MINUTES} min "
                         f"-> {wake_size} on-demand node(s) until it serves again"),
            metrics=(desired, _metric("serving", "GroupInServiceInstances", "group", "Maximum", AUTOSCALING_NAMESPACE)),
            expression="IF(desired >= 1 AND serving < 1, 1, 0)", period_s=PERIOD_S,
            evaluation_periods=STARVED_MINUTES, datapoints_to_alarm=STARVED_MINUTES, threshold=1,
            comparison="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching",
            alarm_actions=("ondemand-fill",), ok_actions=("ondemand-empty",)),
    )
    return FleetRules(
        min_replicas=fleet.min_replicas, max_replicas=fleet.max_replicas, alarms=alarms, policies=policies,
        publishing=NodePublishing(metric_name=METRIC_DEMAND, poll_interval_s=DEMAND_POLL_S,
                                  publish_interval_s=float(PERIOD_S), published_as="statistic-set",
                                  publishes_zero=True),
        standby=StandbyRule(starved_minutes=STARVED_MINUTES, size=wake_size, max_size=fleet.max_replicas),
        hooks=(HookRule(READY_HOOK, "autoscaling:EC2_INSTANCE_LAUNCHING", hook_s, "ABANDON"),
               HookRule(DRAIN_HOOK, "autoscaling:EC2_INSTANCE_TERMINATING", drain_hook_timeout_s(fleet), "CONTINUE")),
    )
