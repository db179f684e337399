"""The node's demand signal: short requests between readings still count, idleness is an
explicit zero, an unreadable vLLM publishes nothing, one datum per node per minute.

The agent reads a loopback stand-in for vLLM's /metrics and /load and publishes through its
real CloudWatch sink to moto's server; the clock is the test's, so every reading happens
exactly where the test puts it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import boto3

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_DEMAND, METRIC_NAMESPACE
from agentdeploy.serving.node.agent import AgentSettings, NodeAgent
from agentdeploy.serving.node.cli import parse_args
from agentdeploy.serving.node.cloud import CloudWatchSink, Datum
from agentdeploy.serving.node.demand import DemandWindow, StatisticSet
from agentdeploy.serving.node.drain import DrainTiming
from agentdeploy.serving.node.imds import ImdsClient
from agentdeploy.serving.node.vllm_client import VllmClient
from tests.node.stub_vllm import StubVllm

STACK, AGENT, REGION = "prod", "router", "us-east-1"


# ---------------------------------------------------------------------- the window (pure)
def test_a_request_between_two_readings_makes_the_peak_one() -> None:
    window = DemandWindow()
    for i in range(12):
        window.add(0.0, finished=100.0 + (1 if i >= 7 else 0))  # gauges never saw it; the counter did
    stats = window.statistics()
    assert stats == StatisticSet(sample_count=12, sum=0.0, minimum=0.0, maximum=1.0)


def test_an_idle_window_is_an_explicit_zero_and_an_unread_one_is_nothing() -> None:
    idle = DemandWindow()
    for _ in range(12):
        idle.add(0.0, finished=7.0)
    assert idle.statistics() == StatisticSet(sample_count=12, sum=0.0, minimum=0.0, maximum=0.0)
    assert DemandWindow().statistics() is None


def test_the_peak_and_the_time_average_of_a_busy_window() -> None:
    window = DemandWindow()
    for value in (0, 3, 5, 2):
        window.add(float(value))
    assert window.statistics() == StatisticSet(sample_count=4, sum=10.0, minimum=0.0, maximum=5.0)


def test_a_request_finishing_between_windows_counts_in_the_next() -> None:
    first = DemandWindow()
    first.add(0.0, finished=5.0)
    second = first.next()
    second.add(0.0, finished=6.0)  # finished after the first window's last reading
    stats = second.statistics()
    assert stats is not None and stats.maximum == 1.0


def test_a_restarted_vllm_counter_counts_from_zero() -> None:
    window = DemandWindow()
    window.add(0.0, finished=40.0)
    window.add(0.0, finished=2.0)  # vLLM restarted and finished two since
    assert window.finished_in_window() == 2.0


# ---------------------------------------------------------------------- the agent, end to end
def _minute_stats(start: float, end: float) -> dict[float, dict]:
    points = boto3.client("cloudwatch", region_name=REGION).get_metric_statistics(
        Namespace=METRIC_NAMESPACE, MetricName=METRIC_DEMAND,
        Dimensions=[{"Name": DIM_STACK, "Value": STACK}, {"Name": DIM_AGENT, "Value": AGENT}],
        StartTime=datetime.fromtimestamp(start, UTC), EndTime=datetime.fromtimestamp(end, UTC), Period=60,
        Statistics=["Maximum", "SampleCount", "Average"])["Datapoints"]
    return {p["Timestamp"].timestamp(): p for p in points}


def test_published_minutes_show_a_short_request_then_an_idle_zero_then_nothing_when_vllm_is_gone(aws) -> None:
    t0 = (time.time() // 60) * 60 - 600  # ten minutes ago, on the minute
    clock = [t0]

    async def scenario() -> int:
        stub = await StubVllm().start()
        async with aiohttp.ClientSession() as session:
            agent = NodeAgent(AgentSettings(STACK, AGENT, DrainTiming(10)), imds=ImdsClient(session, "http://127.0.0.1:9"),
                              vllm=VllmClient(session, stub.url), stopper=None,
                              metrics=CloudWatchSink(STACK, AGENT, region=REGION), clock=lambda: clock[0])
            # Minute 1: a reading every 5 s, each seeing nothing in flight; one 2-second
            # request arrives and finishes between the 6th and 7th.
            for i in range(12):
                clock[0] = t0 + 5 * i
                if i == 6:
                    stub.request_came_and_went()
                await agent.read_demand()
            clock[0] = t0 + 60
            await agent.publish_demand()
            # Minute 2: idle.
            for i in range(1, 12):
                clock[0] = t0 + 60 + 5 * i
                await agent.read_demand()
            clock[0] = t0 + 120
            await agent.publish_demand()
            # Minute 3: vLLM is gone: unknown, not idle.
            await stub.stop()
            for i in range(1, 12):
                clock[0] = t0 + 120 + 5 * i
                await agent.read_demand()
            clock[0] = t0 + 180
            await agent.publish_demand()
            return agent.state.metrics_published

    published = asyncio.run(scenario())
    assert published == 2
    minutes = _minute_stats(t0 - 60, t0 + 240)
    assert sorted(minutes) == [t0, t0 + 60]  # one datum per minute, and none for the unread one
    assert minutes[t0]["Maximum"] == 1.0  # the short request shows
    assert minutes[t0]["Average"] == 0.0  # though no reading ever saw it in flight
    assert minutes[t0 + 60]["Maximum"] == 0.0  # idleness is published, as evidence
    assert minutes[t0 + 60]["SampleCount"] == 12.0


def test_the_agent_publishes_once_per_interval_stamped_with_the_period_it_covers() -> None:
    """The real loops on the real clock: readings between publishes, publishes on multiples of
    the interval, each stamped with the interval that just ended (never two in one period)."""
    published: list[Datum] = []

    class Sink:
        def put(self, data: list[Datum]) -> None:
            published.extend(data)

    async def scenario() -> None:
        stub = await StubVllm(running=2).start()
        async with aiohttp.ClientSession() as session:
            agent = NodeAgent(AgentSettings(STACK, AGENT, DrainTiming(10), metrics_interval_s=0.5, demand_poll_s=0.1,
                                            notice_poll_s=60, health_poll_s=60),
                              imds=ImdsClient(session, "http://127.0.0.1:9"), vllm=VllmClient(session, stub.url),
                              stopper=None, metrics=Sink())
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            while sum(d.name == METRIC_DEMAND for d in published) < 3:  # wait for the proof, not a time
                await asyncio.sleep(0.05)
            stop.set()
            await task
        await stub.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    demand = [d for d in published if d.name == METRIC_DEMAND]
    stamps = [d.at for d in demand]
    assert all(s is not None and (s / 0.5) == round(s / 0.5) for s in stamps), stamps
    assert len(set(stamps)) == len(stamps)  # never two datums in one period
    assert all(d.stats is not None and d.stats.maximum == 2.0 and d.stats.sample_count >= 1 for d in demand)


def test_the_node_defaults_read_every_five_seconds_and_publish_each_minute() -> None:
    """The numbers the stack's rules assume (stacks/scaling_rules.py NodePublishing; checked
    against the rules in tests/stacks/test_fleet_scaling.py)."""
    args = parse_args(["--stack", "s", "--agent", "a"], {})
    assert (args.demand_poll_s, args.metrics_interval_s) == (5.0, 60.0)
    assert AgentSettings("s", "a", DrainTiming(10)).demand_poll_s == 5.0
