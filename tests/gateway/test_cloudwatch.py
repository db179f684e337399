"""The gateway publishes per-agent spend and wake-up demand to CloudWatch (moto server)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import boto3

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_DEMAND, METRIC_NAMESPACE, METRIC_SPEND_USD
from agentdeploy.serving.cloudwatch import CloudWatchPublisher
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.upstreams import NO_HEALTHY
from tests.gateway.helpers import GPU_KEY, chat, env_for, gateway_config


def _sum(cw, name: str, agent: str, stack: str) -> float:
    now = datetime.now(UTC)
    stats = cw.get_metric_statistics(
        Namespace=METRIC_NAMESPACE, MetricName=name, Statistics=["Sum"], Period=60,
        Dimensions=[{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1),
    )
    return sum(p["Sum"] for p in stats["Datapoints"])


def test_publisher_sends_deltas_only(aws):
    metrics = GatewayMetrics()
    pub = CloudWatchPublisher(metrics, "prod", lambda: {"router": "vllm-router"})
    cw = boto3.client("cloudwatch")
    metrics.cost.inc(("intake", "claude-haiku-4-5"), 0.25)
    metrics.cost.inc(("intake", "claude-sonnet-4-6"), 0.5)
    metrics.fallbacks.inc(("router", "vllm-router", NO_HEALTHY), 3)
    metrics.fallbacks.inc(("router", "vllm-router", "ttft_timeout"), 7)  # not a wake signal
    assert pub.publish(cw) == 2
    assert pub.publish(cw) == 0  # nothing new, nothing sent
    metrics.cost.inc(("intake", "claude-haiku-4-5"), 0.25)
    assert pub.publish(cw) == 1
    assert _sum(cw, METRIC_SPEND_USD, "intake", "prod") == 1.0
    assert _sum(cw, METRIC_DEMAND, "router", "prod") == 3.0
    assert _sum(cw, METRIC_DEMAND, "intake", "prod") == 0.0


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


def test_gateway_with_fleet_at_zero_publishes_demand_and_spend(aws, claude_emulator, gateway_factory):
    config = gateway_config(claude_emulator.base_url, replicas=[], cloudwatch_interval_s=0.5)
    env = {**env_for(claude_emulator), **{k: v for k, v in __import__("os").environ.items() if k.startswith("AWS_")}}
    gw = gateway_factory(config, env=env)
    for _ in range(3):
        r = chat(gw.url, GPU_KEY)
        assert r.status_code == 200
        assert r.headers["x-agentdeploy-upstream"] == "anthropic"
    cw = boto3.client("cloudwatch")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _sum(cw, METRIC_DEMAND, "gpu-agent", "test") < 3:
        time.sleep(0.5)
    assert _sum(cw, METRIC_DEMAND, "gpu-agent", "test") == 3.0
    assert _sum(cw, METRIC_SPEND_USD, "gpu-agent", "test") > 0
