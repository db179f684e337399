"""The drain sequence's own decisions, with its edges replaced by recording stand-ins.

The real-process version is test_spot_drain.py; this one covers what real AWS/vLLM timing
cannot force on demand: a lifecycle call refused until the group catches up, an unreadable
in-flight count, a stopper that fails.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from agentdeploy.serving.node import agent as agent_mod
from agentdeploy.serving.node.agent import AgentSettings, NodeAgent
from agentdeploy.serving.node.drain import DrainTiming
from agentdeploy.serving.node.notices import SpotNotice


class Imds:
    async def instance_id(self) -> str:
        return "i-0abc"


class Vllm:
    """in_flight answers from a script; health is 'down' once terminated."""

    def __init__(self, counts: list) -> None:
        self.counts = counts
        self.terminated = False

    async def in_flight(self):  # type: ignore[no-untyped-def]
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    async def health(self) -> str:
        return "down" if self.terminated else "ok"


class Stopper:
    def __init__(self, vllm: Vllm, fail: bool = False) -> None:
        self.vllm, self.fail = vllm, fail

    def describe(self) -> str:
        return "test stopper"

    async def terminate(self) -> None:
        if self.fail:
            raise RuntimeError("systemctl: unit vllm.service not loaded")
        self.vllm.terminated = True


class Lifecycle:
    def __init__(self, refusals: int) -> None:
        self.refusals, self.calls = refusals, 0

    def complete(self, instance_id: str) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise RuntimeError("ValidationError: No active Lifecycle Action found with instance ID i-0abc")


def _notice(seconds: float) -> SpotNotice:
    at = datetime.fromtimestamp(datetime.now(UTC).timestamp() + seconds, UTC)
    return SpotNotice("terminate", at)


def _agent(vllm: Vllm, stopper: Stopper, lifecycle: Lifecycle | None, shutdown_timeout_s: float = 5) -> NodeAgent:
    timing = DrainTiming(shutdown_timeout_s=shutdown_timeout_s, margin_s=2, settle_s=0.05)
    settings = AgentSettings("s", "a", timing, drain_poll_s=0.01)
    return NodeAgent(settings, imds=Imds(), vllm=vllm, stopper=stopper, lifecycle=lifecycle)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_mod, "LIFECYCLE_RETRY_S", 0.01)


def test_waits_through_unreadable_counts_and_retries_a_refused_lifecycle_call() -> None:
    vllm = Vllm(["unknown", 2, "unknown", 1, 0])
    lifecycle = Lifecycle(refusals=2)
    agent = _agent(vllm, Stopper(vllm), lifecycle)
    asyncio.run(agent.drain(_notice(120)))
    state = agent.state
    assert state.stop_reason == "idle"
    assert vllm.counts == [0]  # every reading was consumed first
    assert lifecycle.calls == 3
    assert state.lifecycle_completed
    assert not state.errors
    assert state.phase == "drained"


def test_a_lifecycle_call_refused_every_time_is_reported_not_raised() -> None:
    vllm = Vllm([0])
    lifecycle = Lifecycle(refusals=99)
    agent = _agent(vllm, Stopper(vllm), lifecycle)
    asyncio.run(agent.drain(_notice(120)))
    assert lifecycle.calls == agent_mod.LIFECYCLE_ATTEMPTS
    assert not agent.state.lifecycle_completed
    assert any("lifecycle action" in e for e in agent.state.errors)
    assert agent.state.phase == "drained"


def test_a_failing_stopper_still_ends_the_drain_by_the_deadline() -> None:
    vllm = Vllm([0])
    agent = _agent(vllm, Stopper(vllm, fail=True), Lifecycle(refusals=0), shutdown_timeout_s=1)
    asyncio.run(asyncio.wait_for(agent.drain(_notice(4)), 10))  # waits for the exit until notice - margin/2
    state = agent.state
    assert any("stopping vLLM" in e for e in state.errors)
    assert [e["event"] for e in state.events][-3:] == ["vllm_stop_timeout", "lifecycle_completed", "drained"]


class PollImds(Imds):
    """IMDS as check_notices reads it: a spot notice or None, and a target lifecycle state."""

    def __init__(self, target: str | None, spot: SpotNotice | None = None) -> None:
        self.target, self.spot, self.target_reads = target, spot, 0

    async def spot_notice(self) -> SpotNotice | None:
        return self.spot

    async def rebalance_notice_time(self) -> None:
        return None

    async def target_lifecycle_state(self) -> str | None:
        self.target_reads += 1
        return self.target


class ListSink:
    def __init__(self) -> None:
        self.names: list[str] = []

    def put(self, data) -> None:  # type: ignore[no-untyped-def]
        self.names += [d.name for d in data]


def _polling_agent(imds: PollImds, vllm: Vllm, sink: ListSink) -> NodeAgent:
    timing = DrainTiming(shutdown_timeout_s=5, margin_s=2, settle_s=0.05)
    settings = AgentSettings("s", "a", timing, drain_poll_s=0.01, drain_budget_s=60)
    return NodeAgent(settings, imds=imds, vllm=vllm, stopper=Stopper(vllm), metrics=sink,  # type: ignore[arg-type]
                     lifecycle=Lifecycle(refusals=0))


def test_a_terminated_target_state_drains_as_a_scale_in_and_completes_the_hook() -> None:
    async def scenario() -> tuple[NodeAgent, PollImds]:
        imds, vllm, sink = PollImds("Terminated"), Vllm([1, 0]), ListSink()
        agent = _polling_agent(imds, vllm, sink)
        started = agent._clock()
        await agent.check_notices()
        await agent.check_notices()  # a second poll while draining starts nothing new
        await agent.wait_drained()
        assert agent.state.notice is not None
        assert abs(datetime.fromisoformat(agent.state.notice["time"].replace("Z", "+00:00")).timestamp()
                   - (started + 60)) <= 1.5  # the deadline is the drain budget (whole seconds)
        assert sink.names == []  # a scale-in is not counted as a spot interruption
        return agent, imds

    agent, imds = asyncio.run(scenario())
    state = agent.state
    assert state.notice is not None
    assert state.notice["kind"] == "scale-in"
    assert state.stop_reason == "idle"
    assert state.lifecycle_completed
    assert not state.errors
    assert [e["event"] for e in state.events][0] == "scale_in_notice"
    assert imds.target_reads == 1  # not read again once draining


@pytest.mark.parametrize("target", [None, "InService", "Standby"])
def test_no_drain_off_a_group_or_while_in_service(target: str | None) -> None:
    async def scenario() -> NodeAgent:
        agent = _polling_agent(PollImds(target), Vllm([0]), ListSink())
        await agent.check_notices()
        return agent

    agent = asyncio.run(scenario())
    assert agent.state.phase == "serving"
    assert agent._drain_task is None
    assert not agent.state.events


def test_a_spot_notice_wins_over_the_groups_termination() -> None:
    async def scenario() -> NodeAgent:
        imds = PollImds("Terminated", spot=_notice(120))
        agent = _polling_agent(imds, Vllm([0]), ListSink())
        await agent.check_notices()
        await agent.wait_drained()
        assert imds.target_reads == 0
        return agent

    state = asyncio.run(scenario()).state
    assert state.notice is not None
    assert state.notice["kind"] == "spot"
    assert [e["event"] for e in state.events][0] == "spot_notice"


def test_a_failing_target_state_read_never_hides_a_rebalance_and_never_drains() -> None:
    class Broken(PollImds):
        async def rebalance_notice_time(self) -> str:
            return "2026-11-23T19:00:00Z"

        async def target_lifecycle_state(self) -> str | None:
            raise RuntimeError("IMDS autoscaling/target-lifecycle-state answered 500")

    async def scenario() -> NodeAgent:
        agent = _polling_agent(Broken("Terminated"), Vllm([0]), ListSink())
        await agent.check_notices()
        return agent

    state = asyncio.run(scenario()).state
    assert state.rebalance_notice_time == "2026-11-23T19:00:00Z"
    assert state.phase == "serving"
