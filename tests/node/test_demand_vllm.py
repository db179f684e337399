"""The demand window against real vLLM on CPU: a request that starts and finishes between two
readings of the agent still makes the interval's peak 1, through vLLM's own finished-requests
counter (its real Prometheus name, read from its real /metrics)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from agentdeploy.serving.node.agent import AgentSettings, NodeAgent
from agentdeploy.serving.node.drain import DrainTiming
from agentdeploy.serving.node.imds import ImdsClient
from agentdeploy.serving.node.vllm_client import Load, VllmClient
from tests.node.traffic import direct_request

pytestmark = [pytest.mark.integration, pytest.mark.vllm]


def test_a_request_between_two_readings_shows_in_the_published_peak(vllm_factory) -> None:
    server = vllm_factory(extra_args=["--enable-server-load-tracking"])
    published: list = []

    class Sink:
        def put(self, data: list) -> None:
            published.extend(data)

    async def read(agent: NodeAgent, vllm: VllmClient) -> Load:
        await agent.read_demand()
        load = await vllm.load()
        assert isinstance(load, Load)
        return load

    async def scenario() -> tuple[Load, Load]:
        async with aiohttp.ClientSession() as session:
            vllm = VllmClient(session, server.base_url, timeout_s=30)
            agent = NodeAgent(AgentSettings("s", "a", DrainTiming(10)), imds=ImdsClient(session, "http://127.0.0.1:9"),
                              vllm=vllm, stopper=None, metrics=Sink(), clock=lambda: 600.0)
            before = await read(agent, vllm)
            # The whole request happens between two readings (it has finished when it returns).
            status, error = await asyncio.to_thread(direct_request, server.base_url, server.served_name)
            assert status == 200, error
            after = await read(agent, vllm)
            await agent.publish_demand()
            return before, after

    before, after = asyncio.run(scenario())
    assert before.finished is not None and after.finished == before.finished + 1
    (demand,) = [d for d in published if d.name == "Demand"]
    assert demand.stats.maximum == 1.0
