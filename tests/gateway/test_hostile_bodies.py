"""Hostile request bodies: every wrong shape is a 400 naming the field, in the client's protocol,
written down (log line and metric), and costs nothing upstream (security review findings 1
and 8, and the "13 wrong-type bodies" of its hostile-HTTP section)."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

from agentdeploy.serving.breaker import HALF_OPEN
from agentdeploy.serving.protocol.shapes import check_request
from tests.gateway.helpers import API_KEY, GPU_KEY, env_for, gateway_config, metric_value

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "hi"}]

#: (endpoint, body, the field path the error must name); the review's list, then its "sent upstream" ones.
WRONG: list[tuple[str, dict, str]] = [
    ("openai", {"messages": [1]}, "messages.0"),
    ("openai", {"messages": [None]}, "messages.0"),
    ("openai", {"messages": HI, "temperature": "hot"}, "temperature"),
    ("openai", {"messages": HI, "stop": 5}, "stop"),
    ("openai", {"messages": HI, "tools": "x"}, "tools"),
    ("openai", {"messages": HI, "tools": [1]}, "tools.0"),
    ("openai", {"messages": HI, "tools": [{"type": "function", "function": 1}]}, "tools.0.function"),
    ("openai", {"messages": [{"role": "assistant", "content": None, "tool_calls": [1]}]}, "messages.0.tool_calls.0"),
    ("openai", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "str"}]}]}, "messages.0.content.0.image_url"),
    ("anthropic", {"max_tokens": 8, "messages": [1]}, "messages.0"),
    ("anthropic", {"max_tokens": 8, "messages": HI, "system": 5}, "system"),
    ("openai", {"messages": HI, "stream": True, "stream_options": "x"}, "stream_options"),
    ("openai", {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages.0.content.0.text"),
    ("openai", {"messages": [{"role": "user", "content": [1]}]}, "messages.0.content.0"),
    ("anthropic", {"max_tokens": 8, "messages": HI, "tools": [1]}, "tools.0"),
    ("openai", {"messages": HI, "max_tokens": True}, "max_tokens"),
    ("openai", {"messages": HI, "n": 2}, "n"),
    ("openai", {"messages": []}, "messages"),
    ("anthropic", {"max_tokens": 8, "messages": [{"role": "bot", "content": "x"}]}, "messages.0.role"),
]


def _post(url: str, protocol: str, body: dict, client: httpx.Client | None = None) -> httpx.Response:
    if protocol == "openai":
        path, headers = "/v1/chat/completions", {"authorization": f"Bearer {API_KEY}"}
    else:
        path, headers = "/v1/messages", {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    return (client or httpx).post(url + path, json={"model": "x", **body}, headers=headers, timeout=10)  # type: ignore[attr-defined]


def test_wrong_type_bodies_get_a_400_naming_the_field_and_never_reach_claude(claude_emulator, gateway_factory):
    gw = gateway_factory(gateway_config(claude_emulator.base_url), env=env_for(claude_emulator))
    for protocol, body, path in WRONG:
        r = _post(gw.url, protocol, body)
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error"
        assert err["message"].startswith(path + ":"), (body, err)
        if protocol == "openai":
            assert err["param"] == path
        else:
            assert r.json()["type"] == "error"
    assert claude_emulator.requests() == []  # nothing was sent, so nothing was billed
    log = gw.log_text()
    assert "Traceback" not in log
    assert log.count('"status":400') == len(WRONG)  # one line per refused request
    assert metric_value(gw.metrics(), "agentdeploy_gateway_requests_total", agent="api-agent", status="400") == len(WRONG)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_finding1_200_wrong_stream_options_cost_nothing_and_leak_no_socket(claude_emulator, gateway_factory):
    cfg = gateway_config(claude_emulator.base_url, api_agent={"budget": {"monthly_usd": 0.05, "policy": "block"}})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    body = {"stream": True, "stream_options": "x", "messages": HI}
    with httpx.Client() as client:
        assert _post(gw.url, "openai", {"messages": HI}, client).status_code == 200  # pools warmed
        before = _fds(gw.process.popen.pid)
        codes = [_post(gw.url, "openai", body, client).status_code for _ in range(200)]
    assert codes == [400] * 200
    assert len(claude_emulator.requests()) == 1  # only the warm-up call went upstream
    assert _fds(gw.process.popen.pid) <= before + 2
    m = gw.metrics()
    remaining = metric_value(m, "agentdeploy_gateway_budget_remaining_usd", agent="api-agent")
    spent = metric_value(m, "agentdeploy_gateway_cost_usd_total", agent="api-agent")
    assert remaining == pytest.approx(0.05 - spent, abs=1e-6)  # only the warm-up was charged


def test_finding8_a_malformed_request_leaves_the_half_open_slot_free(claude_emulator, standin_factory, gateway_factory):
    """After a breaker opens and its wait is over, a malformed request must not take the one
    half-open trial: the next good request is that trial, served by vLLM, not paid Claude."""
    st = standin_factory()
    cfg = gateway_config(claude_emulator.base_url, replicas=[st.base_url], breaker={"failure_threshold": 2, "open_s": 0.3})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    st.fault(status=503, times=2)
    for _ in range(2):
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "x", "messages": HI},
                       headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=10)
        assert r.headers["x-agentdeploy-upstream"] == "anthropic"
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_circuit_state", upstream="vllm") == 2  # open
    # Past open_s the breaker lets exactly one trial through (a matter of the clock, not of a
    # race). The malformed request comes first: it must not take that trial (at 76531e0 it
    # did, and never gave it back), so the next valid request is the trial, answered by vLLM.
    time.sleep(0.35)
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "x", "messages": [1]},
                   headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=10)
    assert r.status_code == 400
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "x", "messages": HI},
                   headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["x-agentdeploy-upstream"] == "vllm"


def test_an_exception_in_the_chain_walk_releases_the_half_open_slot(monkeypatch):
    """Whatever raises between pick() and the attempt (a bug included), the trial slot is freed."""
    from agentdeploy.serving import chain as chain_mod
    from agentdeploy.serving.config import GatewayConfig
    from agentdeploy.serving.deliver import Ledger, RequestContext
    from agentdeploy.serving.httpclient import Pool
    from agentdeploy.serving.metrics import GatewayMetrics
    from agentdeploy.serving.redact import Redactor
    from agentdeploy.serving.replies import Replies
    from agentdeploy.serving.runtime import Runtime

    cfg = GatewayConfig.model_validate(gateway_config("http://127.0.0.1:9", replicas=["http://127.0.0.1:9"]))
    rt = Runtime(cfg, {"anthropic": "k", "vllm": None})
    agent = rt.agents["gpu-agent"]
    target = agent.chain[0].upstream.targets[0]
    target.breaker.trip()
    target.breaker.opened_at -= 100  # its wait is over: the next pick is the half-open trial
    monkeypatch.setattr(chain_mod.ChainWalker, "_payload", staticmethod(lambda ctx, step: (_ for _ in ()).throw(RuntimeError("a bug"))))
    ledger = Ledger(GatewayMetrics(), Redactor(), False)
    walker = chain_mod.ChainWalker(Pool(), ledger, Replies(Redactor()))
    ctx = RequestContext(None, "openai", {"messages": HI}, agent, 16, 10, 0.0, False)  # type: ignore[arg-type]

    async def go() -> None:
        with pytest.raises(RuntimeError):
            await walker.run(ctx, agent.chain)

    asyncio.run(go())
    assert target.breaker.state == HALF_OPEN
    assert not target.breaker.trial_in_flight
    assert target.breaker.acquire()  # the slot is free for the next request


def test_request_shapes_count_what_bytes_cannot_price():
    body = {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}},
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]},
        {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
    ]}], "tools": [{"name": "web_search", "type": "web_search_20250305"}, {"name": "f", "input_schema": {"type": "object"}}]}
    priced = check_request("anthropic", body)
    assert (priced.images, priced.documents, priced.server_tools) == (2, 1, 1)
    oa = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}] * 3}]}
    assert check_request("openai", oa).images == 3


def test_a_failure_inside_the_gateway_is_a_500_written_down_and_its_reservation_released(monkeypatch):
    """A bug after admission: the client gets a 500 in its protocol, the request a log line and
    a metric, and the budget gets its reservation back (settled in `finally`)."""
    import orjson

    from agentdeploy.serving import deliver as deliver_mod
    from agentdeploy.serving.app import Gateway
    from agentdeploy.serving.budget import window_key
    from agentdeploy.serving.config import GatewayConfig
    from agentdeploy.serving.httpmsg import Headers, Request

    class Wire:
        responding = False
        keep_alive = True

        async def send(self, data: bytes) -> None:
            raise AssertionError("nothing is streamed")

    lines: list[bytes] = []
    monkeypatch.setattr(deliver_mod, "request_log", lines.append)
    cfg = gateway_config("http://127.0.0.1:9", api_agent={"budget": {"monthly_usd": 5.0, "policy": "block"}})
    gw = Gateway(GatewayConfig.model_validate(cfg), environ={"TEST_ANTHROPIC_KEY": "k"})

    async def broken(ctx, chain):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    monkeypatch.setattr(gw.chain, "run", broken)
    body = orjson.dumps({"model": "x", "max_tokens": 8, "messages": HI})
    headers = Headers({"x-api-key": API_KEY, "content-length": str(len(body))})

    async def go():  # type: ignore[no-untyped-def]
        resp = await gw.handle(Request("POST", "/v1/messages", "", headers, body, Wire()), "anthropic")
        await asyncio.wait(list(gw._background))
        committed = await gw.store.committed(window_key("agentdeploy:budget", "test", "api-agent"))
        return resp, committed

    resp, committed = asyncio.run(go())
    assert resp.status == 500
    assert orjson.loads(resp.body)["error"]["type"] == "api_error"
    assert committed == 0  # the reservation was settled to what was spent: nothing
    assert any(b'"status":500' in ln for ln in lines)
    assert metric_value(gw.metrics.render().decode(), "agentdeploy_gateway_requests_total", agent="api-agent", status="500") == 1
