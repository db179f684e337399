"""End to end: a spot notice on the only GPU node, seen by a client of the gateway.

Gateway chain for the agent: the vLLM node first, the Claude emulator as fallback. The gateway
watches the node agent's /healthz; at the notice the node says 503, so new requests stop going
to it at once — the gateway answers them from Claude — while requests already on the node
finish there in full. A client sending steadily throughout never sees a failure.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from agentdeploy.serving.auth import hash_key
from tests.node.fixtures import engine_paused, wait_for_server_load
from tests.node.test_spot_drain import VLLM_ARGS, _agent_args
from tests.node.traffic import ANSWER_TOKENS

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

CLIENT_KEY = "client-key-router-0123456789abcdef"
CLAUDE_KEY_ENV = "TEST_ANTHROPIC_KEY"
FALLBACK = "claude-haiku-4-5"
PROBE_LIMIT = 300  # bounded: one probe every ~0.2 s for at most a minute


def _gateway_config(claude_url: str, replica: str, served: str, node_health_port: int) -> dict:
    return {
        "version": 1,
        "stack": "smallbiz",
        "upstreams": {
            "anthropic": {"kind": "anthropic", "base_url": claude_url, "api_key": {"env": CLAUDE_KEY_ENV}},
            # Stall limit above the test's freeze: a paused stream must resume, not be cut.
            "vllm": {"kind": "openai", "replicas": [replica], "metrics_poll_s": 0.2, "connect_timeout_s": 0.5,
                     "stall_timeout_s": 30.0, "node_health_port": node_health_port},
        },
        "models": {
            FALLBACK: {"input": 1e-6, "output": 5e-6, "context_tokens": 200000},
            served: {"context_tokens": 512},
        },
        "agents": {
            "ticket-router": {
                "key_hashes": [hash_key(CLIENT_KEY)],
                # Generous first-token limit: the test's freeze must not send in-flight work to Claude.
                "chain": [{"upstream": "vllm", "model": served, "ttft_timeout_s": 30.0},
                          {"upstream": "anthropic", "model": FALLBACK}],
                "max_tokens_default": 16,
                "max_tokens_cap": ANSWER_TOKENS,
            }
        },
        "first_byte_timeout_s": 60.0,
    }


def _post(
    url: str, max_tokens: int, stream: bool = False, timeout: float = 60
) -> tuple[int, str, dict | str]:
    body = {"model": "ticket-router", "max_tokens": max_tokens, "ignore_eos": True, "stream": stream,
            "messages": [{"role": "user", "content": "Which plan fits a bakery?"}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    if not stream:
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=timeout)
        return r.status_code, r.headers.get("x-agentdeploy-model", ""), r.json() if r.status_code == 200 else r.text
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=timeout) as r:
        parts = list(r.iter_text())
        return r.status_code, r.headers.get("x-agentdeploy-model", ""), "".join(parts)


def test_gateway_serves_through_a_spot_interruption(
    imds_factory, vllm_factory, claude_emulator, gateway_factory, node_agent_factory
) -> None:
    imds = imds_factory()
    server = vllm_factory(extra_args=VLLM_ARGS)
    agent = node_agent_factory(_agent_args(server, imds, "--no-aws"))
    gw = gateway_factory(_gateway_config(claude_emulator.base_url, server.base_url, server.served_name, agent.port),
                         env={CLAUDE_KEY_ENV: claude_emulator.api_key})
    agent.wait_for(lambda s: s["healthy"], 30, "healthy")
    deadline = time.monotonic() + 15  # the gateway's breaker lets the node in once its agent says 200
    while (answer := _post(gw.url, 4))[1] != server.served_name:
        assert time.monotonic() < deadline, f"the healthy node never got traffic: {answer}"
        time.sleep(0.3)
    assert answer[0] == 200  # the node serves while healthy

    long_results: list[tuple[int, str, dict | str]] = []
    longs = [threading.Thread(target=lambda s=s: long_results.append(_post(gw.url, ANSWER_TOKENS, stream=s)))
             for s in (True, True, False, False)]
    # Held in flight by a paused engine (the gateway's first-token limit is 30 s): the notice
    # certainly lands while they run, however fast this machine answers today.
    with engine_paused(server.process):
        for t in longs:
            t.start()
        wait_for_server_load(server.base_url, 4)  # all four went to the node, none to Claude
        imds.interrupt("terminate", in_seconds=90)
        agent.wait_for(lambda s: s["phase"] != "serving", 20, "notice seen")
        assert all(t.is_alive() for t in longs), "the notice must land while requests are in flight"

    deadline = time.monotonic() + 15  # the gateway's next node poll
    while not any(ln.startswith("agentdeploy_gateway_replica_draining{") and float(ln.rsplit(" ", 1)[1]) == 1
                  for ln in gw.metrics().splitlines()):
        assert time.monotonic() < deadline, "the gateway never saw the node draining"
        time.sleep(0.1)
    probes: list[tuple[int | None, str]] = []
    stop_probing = threading.Event()

    def probe() -> None:
        for _ in range(PROBE_LIMIT):
            if stop_probing.is_set():
                return
            try:
                status, model, _ = _post(gw.url, 4, timeout=90)
            except httpx.HTTPError as e:
                status, model = None, f"{type(e).__name__}: {e}"
            probes.append((status, model))
            time.sleep(0.2)

    prober = threading.Thread(target=probe)  # a client sending steadily through the drain
    prober.start()
    try:
        state = agent.wait_for(lambda s: s["phase"] == "drained", 90, "drained")
        for t in longs:
            t.join(60)
    finally:
        stop_probing.set()
        prober.join(100)

    assert state["stop_reason"] == "idle"
    assert len(long_results) == 4
    for status, model, body in long_results:  # in flight at the notice: finished in full on the node
        assert (status, model) == (200, server.served_name), body
        if isinstance(body, dict):
            assert body["usage"]["completion_tokens"] == ANSWER_TOKENS
        else:
            assert f'"completion_tokens":{ANSWER_TOKENS}' in body.replace(" ", "")
            assert "data: [DONE]" in body

    assert probes and all(status == 200 for status, _ in probes), probes  # never a failure seen
    # Sent after the notice: refused by the draining node, served elsewhere (Claude, the only other).
    assert {model for _, model in probes} == {FALLBACK}, probes
    after = _post(gw.url, 8)
    assert after[0] == 200
    assert after[1] == FALLBACK  # no replica left: Claude answers
    assert claude_emulator.requests(), "the fallback was never called"
    assert server.wait_exit(30) is not None
