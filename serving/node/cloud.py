"""The AWS calls the node agent makes, behind small interfaces (boto3 is imported lazily).

boto3 honours the standard environment (AWS_REGION, AWS_ENDPOINT_URL, profiles, the instance
role), so the same code talks to AWS on a node and to moto's server in tests. Calls are
synchronous; the agent runs them in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from agentdeploy.naming import (
    DIM_AGENT,
    DIM_STACK,
    METRIC_DEMAND,
    METRIC_IN_FLIGHT,
    METRIC_NAMESPACE,
    METRIC_QUEUE_DEPTH,
)
from agentdeploy.serving.node.demand import StatisticSet

log = logging.getLogger("agentdeploy.node_agent")

#: Node events, published as counts next to the demand metrics. Local names until the lead
#: adds them to agentdeploy.naming.
METRIC_SPOT_INTERRUPTION = "SpotInterruptionNotice"
METRIC_REBALANCE = "RebalanceRecommendation"


@dataclass(frozen=True)
class Datum:
    name: str
    value: float
    unit: str = "Count"
    #: Published as a statistic set (the interval's readings) instead of `value`.
    stats: StatisticSet | None = None
    #: The datum's time (epoch seconds); None: when it is published.
    at: float | None = None


class MetricsSink(Protocol):
    def put(self, data: list[Datum]) -> None: ...


class TargetDeregistrar(Protocol):
    def deregister(self, instance_id: str) -> list[str]: ...


class LifecycleCompleter(Protocol):
    def complete(self, instance_id: str) -> None: ...


def demand_data(waiting: float, running: float, server_load: int | None = None) -> list[Datum]:
    """The three demand metrics from one reading of vLLM's gauges and, where served, its
    `/load` count (pure).

    vLLM's gauges come from the engine's step statistics and can lag its HTTP front end by
    seconds on a busy host (seen on CPU: zero while eight requests were in flight); `/load`
    counts what the front end holds now. Taking the larger of the two, a node that is busy
    is never reported idle to the autoscaler or the reaper.
    """
    in_flight, demand = running, waiting + running
    if server_load is not None:
        in_flight = max(running, server_load - waiting)
        demand = max(demand, server_load)
    return [
        Datum(METRIC_QUEUE_DEPTH, waiting),
        Datum(METRIC_IN_FLIGHT, in_flight),
        Datum(METRIC_DEMAND, demand),
    ]


def _client(service: str, region: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region) if region else boto3.client(service)


class CloudWatchSink:
    """PutMetricData under the agreed namespace with Stack/Agent dimensions."""

    def __init__(self, stack: str, agent: str, *, namespace: str = METRIC_NAMESPACE, region: str | None = None):
        self._client = _client("cloudwatch", region)
        self._namespace = namespace
        self._dimensions = [{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}]

    def put(self, data: list[Datum]) -> None:
        now = datetime.now(UTC)
        self._client.put_metric_data(Namespace=self._namespace, MetricData=[self._datum(d, now) for d in data])

    def _datum(self, d: Datum, now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {"MetricName": d.name, "Dimensions": self._dimensions, "Unit": d.unit,
                               "Timestamp": now if d.at is None else datetime.fromtimestamp(d.at, UTC)}
        if d.stats is None:
            out["Value"] = d.value
        else:
            out["StatisticValues"] = {"SampleCount": d.stats.sample_count, "Sum": d.stats.sum,
                                      "Minimum": d.stats.minimum, "Maximum": d.stats.maximum}
        return out


class ElbTargetDeregistrar:
    """Deregister this instance from its target groups: the load balancer stops sending new
    requests at once and lets open connections finish (deregistration delay)."""

    def __init__(self, target_group_arns: list[str], *, region: str | None = None):
        self._arns = list(target_group_arns)
        self._client = _client("elbv2", region)

    def deregister(self, instance_id: str) -> list[str]:
        done = []
        for arn in self._arns:
            self._client.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
            done.append(arn)
        return done


class AsgLifecycleCompleter:
    """CONTINUE the group's terminating lifecycle hook once vLLM has drained, so the instance
    goes without waiting out the hook's heartbeat timeout."""

    def __init__(self, group: str, hook: str, *, region: str | None = None):
        self.group, self.hook = group, hook
        self._client = _client("autoscaling", region)

    def complete(self, instance_id: str) -> None:
        self._client.complete_lifecycle_action(
            AutoScalingGroupName=self.group,
            LifecycleHookName=self.hook,
            InstanceId=instance_id,
            LifecycleActionResult="CONTINUE",
        )


def discover_target_groups(group: str, *, region: str | None = None) -> list[str]:
    """The target groups attached to an Auto Scaling group (when none were configured)."""
    client = _client("autoscaling", region)
    resp = client.describe_load_balancer_target_groups(AutoScalingGroupName=group)
    return [tg["LoadBalancerTargetGroupARN"] for tg in resp.get("LoadBalancerTargetGroups", [])]
