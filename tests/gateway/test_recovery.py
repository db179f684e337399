"""Probes and recovery (issue 13, item 2): a replica down for a minute under steady traffic.

The request path's own decisions (Upstream.pick, the breaker, apply_probe) run on an injected
clock, so a 60-second outage takes milliseconds and "back within 10 s" is measured on the
gateway's own clock, not hoped for with sleeps. The last test runs the same story against a real
gateway process and a real stand-in replica, with compressed timings.
"""

from __future__ import annotations

import time

import httpx
import pytest

from agentdeploy.serving.breaker import CLOSED
from agentdeploy.serving.config import BreakerSpec, UpstreamSpec
from agentdeploy.serving.upstreams import Upstream, VllmLoad, apply_probe
from tests.gateway.helpers import GPU_KEY, env_for, gateway_config

POLL_S = 1.0
REQUEST_GAP_S = 0.1  # steady traffic: 10 requests a second
DOWN_AT, UP_AT, END = 30.0, 90.0, 120.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _outage(probes: str, breaker: BreakerSpec) -> dict:
    """Run two minutes of steady traffic with the replica down from 30 s to 90 s.

    `probes`: "metrics" (the poller reads vLLM's /metrics), "no_metrics" (the poller's /metrics
    gets a 404 from an OpenAI-compatible server that has none), "none" (no poller at all).
    Returns the times requests reached the dead replica, the probe times while it was down, and
    the first time after recovery a request was served by it.
    """
    clock = Clock()
    spec = UpstreamSpec(kind="openai", replicas=["http://r1:8000"], metrics_poll_s=POLL_S if probes != "none" else 0)
    up = Upstream("vllm", spec, breaker, None, clock=clock)
    target = up.targets[0]
    dead_hits: list[float] = []
    dead_probes: list[float] = []
    served_again: float | None = None
    skipped_after_recovery = 0
    next_poll = 0.55  # polls fall between request arrivals, not on the outage edge
    steps = int(END / REQUEST_GAP_S)
    for i in range(steps):
        clock.t = round(i * REQUEST_GAP_S, 6)
        down = DOWN_AT <= clock.t < UP_AT
        if probes != "none" and clock.t >= next_poll:
            next_poll += POLL_S
            if down:
                dead_probes.append(clock.t)
                apply_probe(up, target, "refused", None)
            else:
                apply_probe(up, target, "metrics" if probes == "metrics" else "alive",
                            VllmLoad() if probes == "metrics" else None)
        picked, _why = up.pick(last_resort=False)
        if picked is None:
            if clock.t >= UP_AT and served_again is None:
                skipped_after_recovery += 1
            continue  # the chain moves on to Claude
        if down:
            dead_hits.append(clock.t)
            picked.breaker.failure()  # connection refused
        else:
            picked.breaker.success()
            if clock.t >= UP_AT and served_again is None:
                served_again = clock.t
    return {"dead_hits": dead_hits, "dead_probes": dead_probes, "served_again": served_again,
            "state": target.breaker.state}


def _per_window(times: list[float], window: float) -> int:
    """The most events inside any half-open window of `window` seconds."""
    best = 0
    for i, t in enumerate(times):
        best = max(best, sum(1 for u in times[i:] if u < t + window - 1e-9))
    return best


@pytest.mark.parametrize("probes", ["metrics", "no_metrics", "none"])
def test_a_replica_down_for_a_minute_gets_one_probe_per_interval_and_is_back_within_10s(probes):
    breaker = BreakerSpec(failure_threshold=3, open_s=2.0)  # the defaults: max_open_s 8 s
    out = _outage(probes, breaker)
    # It opened on the first failures and stayed out: requests reaching the dead replica are
    # the ones that opened the breaker, then trial requests at most one per open_s.
    hits = out["dead_hits"]
    assert hits[:3] == [DOWN_AT, DOWN_AT + 0.1, DOWN_AT + 0.2]
    assert _per_window(hits[3:], breaker.open_s) <= 1
    if probes == "none":
        # No health signal: trials are the only probes, so some are needed, but far fewer than
        # one a request (600 requests arrived while it was down).
        assert 3 < len(hits) <= 3 + (UP_AT - DOWN_AT) / breaker.open_s
    else:
        # The poller keeps a refused replica out: no request is wasted on it after it opened.
        assert len(hits) == 3
        assert _per_window(out["dead_probes"], POLL_S) == 1
    # Back in use within 10 s of recovery, on the gateway's clock.
    assert out["served_again"] is not None
    assert out["served_again"] - UP_AT <= 10.0, out["served_again"]
    assert out["state"] == CLOSED


def test_a_live_probe_cuts_a_doubled_open_time_short():
    """A flapping history doubled the open time to its cap; the poller then sees the replica
    answer: one trial goes after open_s, not after max_open_s."""
    clock = Clock()
    spec = UpstreamSpec(kind="openai", replicas=["http://r1:8000"])
    up = Upstream("vllm", spec, BreakerSpec(failure_threshold=1, open_s=1.0, max_open_s=8.0), None, clock=clock)
    b = up.targets[0].breaker
    b.failure()
    for _ in range(4):  # failed trials: 2, 4, 8, 8 s
        clock.t += b.open_for
        assert b.acquire()
        b.failure()
    assert b.open_for == 8.0
    clock.t += 0.5
    apply_probe(up, up.targets[0], "alive", None)
    assert not b.available()  # not yet open_s since it re-opened
    clock.t += 0.5
    apply_probe(up, up.targets[0], "alive", None)
    assert b.available()
    assert b.acquire() and not b.acquire()  # exactly one trial


def test_per_upstream_breaker_settings_win_over_the_global_ones():
    spec = UpstreamSpec(kind="openai", replicas=["http://r1:8000"], breaker=BreakerSpec(open_s=0.5, max_open_s=3.0))
    up = Upstream("vllm", spec, BreakerSpec(), None)
    b = up.targets[0].breaker
    assert (b.base_open_s, b.max_open_s) == (0.5, 3.0)


@pytest.mark.integration
@pytest.mark.parametrize("metrics", [True, False])
def test_real_gateway_brings_a_restarted_replica_back(metrics, claude_emulator, standin_factory, gateway_factory):
    """A real replica stopped (connection refused) then started again on its port, under steady
    traffic: the gateway falls back meanwhile, and serves from the replica again soon after —
    with vLLM-style /metrics, and with a server that has none."""
    replica = standin_factory(serve_metrics=metrics)
    breaker = {"failure_threshold": 2, "open_s": 0.3, "max_open_s": 1.0}
    cfg = gateway_config(claude_emulator.base_url, replicas=[replica.base_url],
                         vllm={"metrics_poll_s": 0.2, "breaker": breaker})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    headers = {"authorization": f"Bearer {GPU_KEY}"}
    body = {"model": "gpu-agent", "messages": [{"role": "user", "content": "hi"}]}

    def who() -> str:
        r = httpx.post(gw.url + "/v1/chat/completions", headers=headers, json=body, timeout=15)
        assert r.status_code == 200, r.text
        return r.headers["x-agentdeploy-upstream"]

    assert who() == "vllm"
    replica.stop()
    for _ in range(10):
        who()  # falls back to Claude while the replica is gone: never an error
    seen_while_down = len(replica.requests)
    replica.start()  # same port
    t_up = time.monotonic()
    deadline = t_up + 10.0
    while who() != "vllm":
        assert time.monotonic() < deadline, "replica not back in use within 10 s"
        time.sleep(0.05)
    assert len(replica.requests) == seen_while_down + 1


def test_render_copies_the_plans_recovery_settings_per_agent():
    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog
    from agentdeploy.templates.gateway_config import build_gateway_config

    catalog = load_catalog(include_home=False)
    plan = build_plan(load_decision_file("examples/high-volume-router.yaml"), catalog)
    agent = plan.agent("ticket-router")
    fleet = agent.fleet.model_copy(update={"probe_interval_s": 1.5, "breaker_max_open_s": 6.0})
    plan = plan.model_copy(update={"agents": [agent.model_copy(update={"fleet": fleet}) if a.name == agent.name else a
                                              for a in plan.agents]})
    cfg = build_gateway_config(plan, catalog)
    up = cfg.upstreams["vllm-ticket-router"]
    assert up.breaker == BreakerSpec(open_s=1.5, max_open_s=6.0)
    assert up.continuation  # vLLM replicas finish each other's broken streams
    assert cfg.upstreams["anthropic"].breaker is None  # Claude keeps the global breaker
    assert not cfg.upstreams["anthropic"].continuation
