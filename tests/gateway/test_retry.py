"""Retry where it pays (issue 13, item 3): one retry on the same upstream for a failure before the
first byte that is likely transient (a 5xx, a reset before any response), when the deadline
allows it, then fall back; every retry counted and logged."""

from __future__ import annotations

import orjson
import pytest

from agentdeploy.serving import fallback as fb
from tests.gateway.helpers import API_KEY, GPU_KEY, chat, env_for, gateway_config, metric_value

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(claude_emulator, standin_factory, gateway_factory):
    def make(**kw):
        st = standin_factory()
        gw = gateway_factory(gateway_config(claude_emulator.base_url, replicas=[st.base_url], **kw), env=env_for(claude_emulator))
        return gw, st, claude_emulator

    return make


def _retry_lines(gw) -> list[dict]:
    return [orjson.loads(ln) for ln in gw.log_text().splitlines() if ln.startswith("{") and '"upstream_retry"' in ln]


def test_a_5xx_from_vllm_is_retried_once_on_the_same_upstream(setup):
    gw, st, claude = setup()
    st.fault(status=503)
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "standin"  # the retry answered: no fallback to Claude
    assert "x-agentdeploy-fallback" not in r.headers
    assert len(st.requests) == 2
    assert claude.requests() == []
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_upstream_retries_total", agent="gpu-agent", upstream="vllm", reason="server_error") == 1
    [line] = _retry_lines(gw)
    assert (line["agent"], line["upstream"], line["reason"], line["status"]) == ("gpu-agent", "vllm", "server_error", 503)


def test_a_second_5xx_falls_back_after_exactly_one_retry(setup):
    gw, st, claude = setup()
    st.fault(status=502, times=3)
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:server_error"
    assert len(st.requests) == 2  # the attempt and one retry, never a third
    assert len(_retry_lines(gw)) == 1


def test_no_retry_when_the_deadline_cannot_hold_another_first_token_wait(setup):
    # The entry's first-token limit is 1 s; a 0.5 s deadline leaves no room for a second try.
    gw, st, claude = setup(gpu_agent={"deadline_s": 0.5})
    st.fault(status=503)
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    assert len(st.requests) == 1
    assert _retry_lines(gw) == []


def test_a_status_that_can_never_work_there_is_not_retried(setup):
    gw, st, claude = setup()
    st.fault(status=501)
    r = chat(gw.url, GPU_KEY)
    assert r.json()["model"] == "claude-haiku-4-5"
    assert len(st.requests) == 1


def test_a_reset_before_any_response_from_claude_is_retried(setup):
    gw, st, claude = setup()
    # The gateway's first request to Claude opens a fresh connection, so the pool's own resend
    # (for reused connections only) cannot take this fault: the retry here is the chain's.
    claude.faults({"reset": True})
    r = chat(gw.url, API_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-sonnet-4-6"
    assert len(claude.requests()) == 2
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_upstream_retries_total", agent="api-agent", upstream="anthropic", reason="disconnected") == 1
    assert "agentdeploy_gateway_upstream_resends_total{" not in m


def test_claude_500_is_retried_and_429_retries_are_counted_too(setup):
    gw, st, claude = setup()
    claude.faults({"status": 500}, {"status": 429, "retry_after": 0})
    r = chat(gw.url, API_KEY)
    assert r.status_code == 200
    assert len(claude.requests()) == 3
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_upstream_retries_total", agent="api-agent", upstream="anthropic", reason="server_error") == 1
    assert metric_value(m, "agentdeploy_gateway_upstream_retries_total", agent="api-agent", upstream="anthropic", reason="rate_limited") == 1


def test_which_failures_count_as_transient():
    assert fb.classify_status(503, "openai", b"{}").transient
    assert fb.classify_status(500, "anthropic", b"{}").transient
    assert not fb.classify_status(501, "openai", b"{}").transient
    assert not fb.classify_status(529, "anthropic", b"{}").transient  # overload has its own back-off
    assert not fb.classify_status(400, "openai", b"{}").transient
