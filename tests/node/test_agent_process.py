"""The node agent as users meet it: its configuration errors, its health face, rebalance."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest

from agentdeploy.serving.node.agent import AgentSettings, NodeAgent, NodeState
from agentdeploy.serving.node.cli import parse_args
from agentdeploy.serving.node.cloud import Datum
from agentdeploy.serving.node.drain import DrainTiming
from agentdeploy.serving.node.health import start_health_server
from agentdeploy.serving.node.imds import ImdsClient
from agentdeploy.serving.node.vllm_client import VllmClient
from tests.support.emulators.imds import ImdsEmulator
from tests.support.procs import free_port


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentdeploy.serving.node", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize(
    "args, env, needle",
    [
        ((), {}, "--stack (or AGENTDEPLOY_STACK) is required"),
        (("--stack", "s", "--agent", "a", "--notice-poll-s", "0"), {}, "--notice-poll-s must be > 0"),
        (("--stack", "s", "--agent", "a"), {"AGENTDEPLOY_HEALTH_PORT": "eighty"}, "argument --health-port"),
        (("--stack", "s", "--agent", "a", "--drain-budget-s", "0"), {}, "--drain-budget-s must be > 0"),
    ],
)
def test_bad_configuration_exits_2_naming_the_option(args: tuple, env: dict, needle: str) -> None:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDEPLOY_")}
    proc = _run_cli(*args, env={**clean, **env})
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_environment_supplies_defaults_as_on_a_node() -> None:
    env = {"AGENTDEPLOY_STACK": "smallbiz", "AGENTDEPLOY_AGENT": "router", "AGENTDEPLOY_VLLM_PORT": "8000",
           "AGENTDEPLOY_HEALTH_PORT": "8081", "AGENTDEPLOY_SHUTDOWN_TIMEOUT_S": "90",
           "AGENTDEPLOY_TARGET_GROUP_ARNS": "arn:a,arn:b"}
    args = parse_args([], env)
    assert (args.stack, args.agent, args.health_port, args.shutdown_timeout_s) == ("smallbiz", "router", 8081, 90.0)
    assert args.vllm_url == "http://127.0.0.1:8000"
    assert args.target_group_arn == ["arn:a", "arn:b"]
    assert args.notice_poll_s == 5.0  # AWS's recommendation
    assert parse_args(["--health-port", "9000"], env).health_port == 9000  # flags win
    assert args.drain_budget_s is None  # derived from the shutdown timeout: AgentSettings.scale_in_budget_s
    assert parse_args([], {**env, "AGENTDEPLOY_DRAIN_BUDGET_S": "60"}).drain_budget_s == 60.0


def test_default_scale_in_budget_fits_the_hook_set_for_the_same_shutdown_timeout() -> None:
    settings = AgentSettings("s", "a", DrainTiming(90), notice_poll_s=5)
    assert settings.scale_in_budget_s == 115  # heartbeat 90 + 30, less one poll
    assert AgentSettings("s", "a", DrainTiming(90), drain_budget_s=40).scale_in_budget_s == 40


class ListSink:
    def __init__(self) -> None:
        self.data: list[Datum] = []

    def put(self, data: list[Datum]) -> None:
        self.data.extend(data)


def test_rebalance_is_logged_and_counted_but_not_terminal(imds: ImdsEmulator) -> None:
    sink = ListSink()

    async def scenario() -> tuple[NodeState, list[int]]:
        async with aiohttp.ClientSession() as session:
            vllm = VllmClient(session, f"http://127.0.0.1:{free_port()}")  # nothing listens: vLLM down
            agent = NodeAgent(
                AgentSettings("s", "a", DrainTiming(10), notice_poll_s=0.05, health_poll_s=0.05, metrics_interval_s=0.05),
                imds=ImdsClient(session, imds.url), vllm=vllm, stopper=None, metrics=sink,
            )
            port = free_port()
            runner = await start_health_server(agent.state, "127.0.0.1", port)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            imds.recommend_rebalance()
            await asyncio.sleep(0.5)
            codes = []
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                codes.append(r.status)
            stop.set()
            await task
            await runner.cleanup()
            return agent.state, codes

    state, codes = asyncio.run(scenario())
    assert state.phase == "serving"
    assert state.rebalance_notice_time is not None
    assert [e["event"] for e in state.events].count("rebalance_recommendation") == 1  # once, not per poll
    assert [d.name for d in sink.data] == ["RebalanceRecommendation"]  # vLLM down: no demand datapoints
    assert codes == [503]  # vLLM down: not in rotation even without a notice


def test_healthz_follows_state() -> None:
    state = NodeState(vllm="ok")

    async def probe() -> list[int]:
        port = free_port()
        runner = await start_health_server(state, "127.0.0.1", port)
        codes = []
        async with aiohttp.ClientSession() as s:
            for phase in ("serving", "draining", "stopping", "drained"):
                state.phase = phase  # type: ignore[assignment]
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    codes.append(r.status)
        await runner.cleanup()
        return codes

    assert asyncio.run(probe()) == [200, 503, 503, 503]


def test_missing_boto3_is_a_clear_exit_4(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    from agentdeploy.serving.node import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "boto3" else real(name, *a))
    assert cli.main(["--stack", "s", "--agent", "a"]) == 4
    assert "install agentdeploy[serving,cloud]" in capsys.readouterr().err
