"""Publish the gateway's spend and wake-up demand to CloudWatch.

Two signals only the gateway has:
- `SpendUSD` per agent (Sum): what the per-agent spend-pace alarms and `deploy cost` read;
- `Demand` per self-hosted agent while its fleet had no healthy replica: with no nodes running,
  nobody else can say traffic is waiting, so this is what the wake-from-zero alarm sees.

Deltas are taken from the gateway's own counters (the same numbers /metrics shows), so
publishing adds nothing to the request path. boto3 is imported only when publishing is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_DEMAND, METRIC_NAMESPACE, METRIC_SPEND_USD
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.upstreams import NO_HEALTHY

log = logging.getLogger("agentdeploy.gateway.cloudwatch")
#: PutMetricData takes at most 1,000 data points a call.
BATCH = 1000


class CloudWatchPublisher:
    def __init__(self, metrics: GatewayMetrics, stack: str, self_hosted: Callable[[], dict[str, str]]) -> None:
        """`self_hosted()` maps each GPU agent to its self-hosted upstream's name (re-read per tick,
        so a config reload is followed)."""
        self.metrics, self.stack, self.self_hosted = metrics, stack, self_hosted
        self._spend: dict[str, float] = {}
        self._no_replica: dict[str, float] = {}

    def collect(self) -> list[dict[str, Any]]:
        """The metric data accumulated since the last call (deltas; nothing when nothing changed)."""
        spend: dict[str, float] = {}
        for (agent, _model), usd in self.metrics.cost.values.items():
            spend[str(agent)] = spend.get(str(agent), 0.0) + usd
        waiting: dict[str, float] = {}
        upstream_of = self.self_hosted()
        for (agent, upstream, reason), n in self.metrics.fallbacks.values.items():
            if reason == NO_HEALTHY and upstream_of.get(str(agent)) == upstream:
                waiting[str(agent)] = waiting.get(str(agent), 0.0) + n
        data = []
        for agent, total in sorted(spend.items()):
            delta = total - self._spend.get(agent, 0.0)
            if delta > 0:
                data.append(self._datum(METRIC_SPEND_USD, agent, delta, "None"))
        for agent, total in sorted(waiting.items()):
            delta = total - self._no_replica.get(agent, 0.0)
            if delta > 0:
                data.append(self._datum(METRIC_DEMAND, agent, delta, "Count"))
        self._spend, self._no_replica = spend, waiting
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
        for i in range(0, len(data), BATCH):
            client.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=data[i : i + BATCH])
        return len(data)

    async def run_forever(self, interval_s: float, client_factory: Callable[[], Any] | None = None) -> None:
        """Publish every `interval_s` until cancelled; a failed call is logged and its deltas kept."""
        factory = client_factory or _default_client
        client = await asyncio.to_thread(factory)
        while True:
            await asyncio.sleep(interval_s)
            saved = (dict(self._spend), dict(self._no_replica))
            try:
                await asyncio.to_thread(self.publish, client)
            except Exception as err:  # noqa: BLE001 - metrics must never take the gateway down
                self._spend, self._no_replica = saved
                log.warning("publishing to CloudWatch failed, will retry: %s", type(err).__name__)


def _default_client() -> Any:
    import boto3

    return boto3.client("cloudwatch")
