"""serving/wake.py: the gateway raises a fleet at zero itself, once per interval, against moto's
server; a failure is logged and counted and never reaches the request."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

from agentdeploy.serving.config import WakeSpec
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.wake import ALREADY_UP, ERROR, RATE_LIMITED, WOKEN, FleetWaker, wake_capacity
from tests.gateway.fleet_cloud import REGION, desired, group_at
from tests.gateway.helpers import GPU_KEY, chat, env_for, gateway_config
from tests.ops.cloud import identity_denied

GROUP = "agentdeploy-test-gpu-agent"


def test_wake_capacity_only_raises_a_group_at_zero_and_never_above_its_max():
    assert wake_capacity(0, 4, 1) == 1
    assert wake_capacity(0, 2, 3) == 2
    assert wake_capacity(1, 4, 1) is None  # already launching or serving
    assert wake_capacity(0, 0, 1) is None  # switched off on purpose


def test_concurrent_requests_make_one_call_and_the_group_goes_to_its_capacity(aws):
    group_at(GROUP, desired=0)
    metrics = GatewayMetrics()
    now = [100.0]
    waker = FleetWaker("vllm", WakeSpec(asg_name=GROUP, capacity=1, min_interval_s=30, region=REGION), metrics,
                       clock=lambda: now[0])

    async def burst() -> list[bool]:
        started = [waker.request() for _ in range(5)]
        assert waker.task is not None
        assert await waker.task == WOKEN
        now[0] += 29.0
        started.append(waker.request())  # within the interval: no call
        return started

    assert asyncio.run(burst()) == [True, False, False, False, False, False]
    assert desired(GROUP) == 1
    assert metrics.wakes.get(("vllm", WOKEN)) == 1
    assert metrics.wakes.get(("vllm", RATE_LIMITED)) == 5

    async def later() -> str:
        now[0] += 1.0  # the interval has passed: the group is up, so nothing is set
        assert waker.request()
        assert waker.task is not None
        return await waker.task

    assert asyncio.run(later()) == ALREADY_UP
    assert desired(GROUP) == 1


def test_a_denied_call_is_logged_and_counted(aws, monkeypatch, caplog):
    group_at(GROUP, desired=0)
    metrics = GatewayMetrics()
    waker = FleetWaker("vllm", WakeSpec(asg_name=GROUP, region=REGION), metrics)
    with identity_denied(aws.url, "autoscaling:SetDesiredCapacity") as creds:
        for k, v in creds.items():
            monkeypatch.setenv(k, v)

        async def once() -> str:
            assert waker.request()
            assert waker.task is not None
            return await waker.task

        with caplog.at_level("WARNING", logger="agentdeploy.gateway.wake"):
            assert asyncio.run(once()) == ERROR
    assert metrics.wakes.get(("vllm", ERROR)) == 1
    assert "fleet_wake_failed" in caplog.text and "AccessDenied" in caplog.text
    assert desired(GROUP) == 0


def _wake_config(claude_url: str, interval: float) -> dict:
    return gateway_config(claude_url, replicas=[], vllm={
        "wake": {"asg_name": GROUP, "capacity": 1, "min_interval_s": interval, "region": REGION}})


def _aws_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


def _metric(gw, line_start: str) -> float:
    for line in gw.metrics().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(cond, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.integration
def test_gateway_wakes_a_fleet_at_zero_once_per_interval_while_the_fallback_serves(aws, claude_emulator, gateway_factory):
    group_at(GROUP, desired=0)
    gw = gateway_factory(_wake_config(claude_emulator.base_url, 3600), env={**env_for(claude_emulator), **_aws_env()})
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.headers["x-agentdeploy-upstream"] == "anthropic"
    assert "vllm:no_healthy_replica" in r.headers["x-agentdeploy-fallback"]
    woken = 'agentdeploy_gateway_fleet_wakes_total{upstream="vllm",outcome="woken"}'
    _wait(lambda: _metric(gw, woken) == 1, "the wake call")
    assert desired(GROUP) == 1
    assert chat(gw.url, GPU_KEY).status_code == 200  # within the interval: no second call
    assert _metric(gw, 'agentdeploy_gateway_fleet_wakes_total{upstream="vllm",outcome="rate_limited"}') == 1
    assert _metric(gw, woken) == 1
    assert _metric(gw, 'agentdeploy_gateway_unmet_demand_total{agent="gpu-agent",upstream="vllm",reason="no_healthy_replica"}') == 2
    assert '"event":"fleet_wake","upstream":"vllm"' in gw.log_text()


@pytest.mark.integration
def test_a_wake_the_cloud_refuses_still_serves_the_request_from_the_fallback(aws, claude_emulator, gateway_factory):
    group_at(GROUP, desired=0)
    with identity_denied(aws.url, "autoscaling:SetDesiredCapacity") as creds:
        gw = gateway_factory(_wake_config(claude_emulator.base_url, 3600),
                             env={**env_for(claude_emulator), **_aws_env(), **creds})
        r = chat(gw.url, GPU_KEY)
        assert r.status_code == 200
        assert r.headers["x-agentdeploy-upstream"] == "anthropic"
        _wait(lambda: _metric(gw, 'agentdeploy_gateway_fleet_wakes_total{upstream="vllm",outcome="error"}') == 1,
              "the refused wake to be counted")
        assert "AccessDenied" in gw.log_text()
    assert desired(GROUP) == 0
    assert httpx.get(gw.url + "/healthz").status_code == 200


def test_a_reload_keeps_an_unchanged_fleets_waker_and_its_rate_limit():
    from agentdeploy.serving.wake import wakers_for

    metrics = GatewayMetrics()
    spec = WakeSpec(asg_name=GROUP, region=REGION)
    first = wakers_for({"vllm": spec}, {}, metrics)
    assert wakers_for({"vllm": spec}, first, metrics)["vllm"] is first["vllm"]
    changed = wakers_for({"vllm": spec.model_copy(update={"capacity": 2})}, first, metrics)
    assert changed["vllm"] is not first["vllm"]
    assert wakers_for({}, first, metrics) == {}
