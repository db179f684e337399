"""Publish what only the gateway knows to CloudWatch.

- `SpendUSD` per agent (Sum): what the per-agent spend-pace alarms and `deploy cost` read;
- `UnmetDemand` per self-hosted agent: requests meant for its fleet that the fleet could not
  take (no healthy node: at zero, warming, breakers open; or every node full or predicted to
  queue past the first-token budget). With no node running nobody else can say traffic is
  waiting: this is what the wake alarm, the backup of the gateway's own wake, reads.
- `FleetServed` per self-hosted agent: requests its fleet answered through the gateway.

Both fleet series are counts per publish interval under names of their own, published every
interval, zeros included (evidence the gateway saw no such request, not a gap). The nodes'
concurrency gauge `Demand`, which target tracking averages, is the nodes' alone: the gateway
never publishes it. Deltas are taken from the gateway's own counters (the numbers /metrics
shows), so publishing adds nothing to the request path. boto3 is imported only when on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from agentdeploy.naming import (
    DIM_AGENT,
    DIM_STACK,
    METRIC_FLEET_SERVED,
    METRIC_NAMESPACE,
    METRIC_SPEND_USD,
    METRIC_UNMET_DEMAND,
)
from agentdeploy.serving.metrics import Counter, GatewayMetrics

log = logging.getLogger("agentdeploy.gateway.cloudwatch")
#: PutMetricData takes at most 1,000 data points a call.
BATCH = 1000


class CloudWatchPublisher:
    def __init__(self, metrics: GatewayMetrics, stack: str, self_hosted: Callable[[], dict[str, str]]) -> None:
        """`self_hosted()` maps each GPU agent to its self-hosted upstream's name (re-read per tick,
        so a config reload is followed)."""
        self.metrics, self.stack, self.self_hosted = metrics, stack, self_hosted
        self._spend: dict[str, float] = {}
        self._unmet: dict[str, float] = {}
        self._served: dict[str, float] = {}

    @staticmethod
    def _per_fleet(counter: Counter, upstream_of: dict[str, str]) -> dict[str, float]:
        """A counter labelled (agent, upstream, ...) summed per agent, over its fleet's upstream."""
        out = dict.fromkeys(upstream_of, 0.0)
        for labels, n in counter.values.items():
            agent, upstream = str(labels[0]), labels[1]
            if upstream_of.get(agent) == upstream:
                out[agent] += n
        return out

    def collect(self) -> list[dict[str, Any]]:
        """The metric data accumulated since the last call: spend deltas when there are any, and
        each fleet's unmet and served counts of the interval (zeros included)."""
        spend: dict[str, float] = {}
        for (agent, _model), usd in self.metrics.cost.values.items():
            spend[str(agent)] = spend.get(str(agent), 0.0) + usd
        upstream_of = self.self_hosted()
        unmet = self._per_fleet(self.metrics.unmet, upstream_of)
        served = self._per_fleet(self.metrics.requests, upstream_of)
        data = []
        for agent, total in sorted(spend.items()):
            delta = total - self._spend.get(agent, 0.0)
            if delta > 0:
                data.append(self._datum(METRIC_SPEND_USD, agent, delta, "None"))
        for agent in sorted(upstream_of):
            data.append(self._datum(METRIC_UNMET_DEMAND, agent, unmet[agent] - self._unmet.get(agent, 0.0), "Count"))
            data.append(self._datum(METRIC_FLEET_SERVED, agent, served[agent] - self._served.get(agent, 0.0), "Count"))
        self._spend, self._unmet, self._served = spend, unmet, served
        return data

    def _datum(self, name: str, agent: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": [{"Name": DIM_STACK, "Value": self.stack}, {"Name": DIM_AGENT, "Value": agent}],
            "Value": float(value),
            "Unit": unit,
        }

    def publish(self, client: Any) -> int:
        data = self.collect()
        send(client, data)
        return len(data)

    async def run_forever(self, interval_s: float, client_factory: Callable[[], Any] | None = None) -> None:
        """Publish every `interval_s` until cancelled; a failed call is logged and its deltas kept."""
        factory = client_factory or _default_client
        client = await asyncio.to_thread(factory)
        while True:
            await asyncio.sleep(interval_s)
            saved = (dict(self._spend), dict(self._unmet), dict(self._served))
            try:
                # Collected here on the loop (the counters change under it); only the call is threaded.
                await asyncio.to_thread(send, client, self.collect())
            except Exception as err:  # noqa: BLE001 - metrics must never take the gateway down
                self._spend, self._unmet, self._served = saved
                log.warning("publishing to CloudWatch failed, will retry: %s", type(err).__name__)


def send(client: Any, data: list[dict[str, Any]]) -> None:
    for i in range(0, len(data), BATCH):
        client.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=data[i : i + BATCH])


def _default_client() -> Any:
    import boto3

    return boto3.client("cloudwatch")
