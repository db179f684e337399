"""The gateway publishes per-agent spend, and its fleets' unmet demand and served counts under names of
their own, to CloudWatch (moto server); never the nodes' Demand series."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import boto3

from agentdeploy.naming import (
    DIM_AGENT,
    DIM_STACK,
    METRIC_DEMAND,
    METRIC_FLEET_SERVED,
    METRIC_NAMESPACE,
    METRIC_SPEND_USD,
    METRIC_UNMET_DEMAND,
)
from agentdeploy.serving.cloudwatch import CloudWatchPublisher
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.upstreams import NO_HEALTHY, OVERLOAD
from tests.gateway.helpers import GPU_KEY, chat, env_for, gateway_config


def _sum(cw, name: str, agent: str, stack: str) -> float:
    now = datetime.now(UTC)
    stats = cw.get_metric_statistics(
        Namespace=METRIC_NAMESPACE, MetricName=name, Statistics=["Sum"], Period=60,
        Dimensions=[{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1),
    )
    return sum(p["Sum"] for p in stats["Datapoints"])


def test_publisher_sends_spend_deltas_and_each_fleets_interval_counts(aws):
    metrics = GatewayMetrics()
    pub = CloudWatchPublisher(metrics, "prod", lambda: {"router": "vllm-router"})
    cw = boto3.client("cloudwatch")
    metrics.cost.inc(("intake", "claude-haiku-4-5"), 0.25)
    metrics.cost.inc(("intake", "claude-sonnet-4-6"), 0.5)
    metrics.unmet.inc(("router", "vllm-router", NO_HEALTHY), 3)
    metrics.unmet.inc(("router", "vllm-router", OVERLOAD), 2)
    metrics.requests.inc(("router", "vllm-router", "llama", 200), 7)
    metrics.requests.inc(("router", "anthropic", "claude-haiku-4-5", 200), 5)  # the fallback: not the fleet's
    metrics.fallbacks.inc(("router", "vllm-router", "ttft_timeout"), 4)  # the fleet took it and failed: not unmet
    sent = pub.collect()
    assert {(d["MetricName"], d["Dimensions"][1]["Value"], d["Value"]) for d in sent} == {
        (METRIC_SPEND_USD, "intake", 0.75), (METRIC_UNMET_DEMAND, "router", 5.0), (METRIC_FLEET_SERVED, "router", 7.0)}
    assert all(d["MetricName"] != METRIC_DEMAND for d in sent)
    # Nothing new: no spend, and the fleet's interval counts are zeros (evidence, not a gap).
    assert [(d["MetricName"], d["Value"]) for d in pub.collect()] == [(METRIC_UNMET_DEMAND, 0.0), (METRIC_FLEET_SERVED, 0.0)]
    metrics.unmet.inc(("router", "vllm-router", NO_HEALTHY), 1)
    assert pub.publish(cw) == 2
    assert _sum(cw, METRIC_UNMET_DEMAND, "router", "prod") == 1.0
    assert _sum(cw, METRIC_FLEET_SERVED, "router", "prod") == 0.0
    assert cw.list_metrics(Namespace=METRIC_NAMESPACE, MetricName=METRIC_DEMAND)["Metrics"] == []


def test_failed_publish_keeps_its_deltas():
    """An outage loses nothing: the next successful call carries what the failed one held."""
    import asyncio

    metrics = GatewayMetrics()
    pub = CloudWatchPublisher(metrics, "prod", dict)
    metrics.cost.inc(("a", "m"), 2.0)

    class Flaky:
        calls = 0
        sent: list = []

        def put_metric_data(self, **kw):
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("endpoint down")
            self.sent.extend(kw["MetricData"])

    client = Flaky()

    async def main():
        task = asyncio.ensure_future(pub.run_forever(0.02, lambda: client))
        while client.calls < 2:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert [d["Value"] for d in client.sent] == [2.0]


def test_gateway_with_fleet_at_zero_publishes_unmet_demand_and_spend(aws, claude_emulator, gateway_factory):
    config = gateway_config(claude_emulator.base_url, replicas=[], cloudwatch_interval_s=0.5)
    env = {**env_for(claude_emulator), **{k: v for k, v in __import__("os").environ.items() if k.startswith("AWS_")}}
    gw = gateway_factory(config, env=env)
    for _ in range(3):
        r = chat(gw.url, GPU_KEY)
        assert r.status_code == 200
        assert r.headers["x-agentdeploy-upstream"] == "anthropic"
    cw = boto3.client("cloudwatch")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _sum(cw, METRIC_UNMET_DEMAND, "gpu-agent", "test") < 3:
        time.sleep(0.5)
    assert _sum(cw, METRIC_UNMET_DEMAND, "gpu-agent", "test") == 3.0
    assert _sum(cw, METRIC_SPEND_USD, "gpu-agent", "test") > 0
    assert cw.list_metrics(Namespace=METRIC_NAMESPACE, MetricName=METRIC_DEMAND)["Metrics"] == []
