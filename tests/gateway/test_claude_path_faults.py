"""Every failure class through the Claude path (issue 13, item 5): an OpenAI client whose agent
runs on Claude, so every request and every stream crosses the OpenAI <-> Anthropic translation;
each fault is injected by the Claude emulator (tests/support/emulators/anthropic.py).

The agent's chain is Sonnet (first-token limit 1 s), then Haiku; faults hit Sonnet only. Before
the first token a failure is retried or falls back to Haiku, invisibly; after it, the OpenAI
client gets an explicit in-band error naming the failure (Claude is never asked to continue:
it rejects assistant prefill).
"""

from __future__ import annotations

import time

import pytest

from tests.gateway.helpers import API_KEY, chat, env_for, gateway_config, openai_text, sse_events, stream_chat

pytestmark = pytest.mark.integration

SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"


@pytest.fixture
def gw(claude_emulator, gateway_factory):
    chain = [{"upstream": "anthropic", "model": SONNET, "ttft_timeout_s": 1.0}, {"upstream": "anthropic", "model": HAIKU}]
    cfg = gateway_config(claude_emulator.base_url, api_agent={"chain": chain, "max_retries_per_upstream": 1})
    return gateway_factory(cfg, env=env_for(claude_emulator))


def _models(claude) -> list[str]:
    return [q["body"]["model"] for q in claude.requests()]


# (fault on Sonnet, the model that answers, the fallback header, Claude's requests by model)
BEFORE_FIRST_TOKEN = [
    pytest.param({"status": 500}, SONNET, None, [SONNET, SONNET], id="5xx-once-retried"),
    pytest.param({"status": 500, "times": 2}, HAIKU, "anthropic:server_error", [SONNET, SONNET, HAIKU], id="5xx-twice-falls-back"),
    pytest.param({"reset": True}, SONNET, None, [SONNET, SONNET], id="reset-before-response-retried"),
    pytest.param({"status": 429, "retry_after": 0.2}, SONNET, None, [SONNET, SONNET], id="429-retry-after-fits"),
    pytest.param({"status": 429}, SONNET, None, [SONNET, SONNET], id="429-no-retry-after-backoff"),
    pytest.param({"status": 429, "retry_after": 60}, HAIKU, "anthropic:rate_limited", [SONNET, HAIKU], id="429-too-long-falls-back"),
    pytest.param({"status": 529, "times": 2}, HAIKU, "anthropic:overloaded", [SONNET, SONNET, HAIKU], id="529-retried-then-falls-back"),
    pytest.param({"sse_error": "overloaded_error"}, SONNET, None, [SONNET, SONNET], id="overloaded-event-like-529"),
    pytest.param({"delay_s": 3}, HAIKU, "anthropic:ttft_timeout", [SONNET, HAIKU], id="silence"),
    pytest.param({"ttft_s": 3}, HAIKU, "anthropic:ttft_timeout", [SONNET, HAIKU], id="slow-first-token"),
    pytest.param({"malformed_after": 0}, HAIKU, "anthropic:malformed_chunk", [SONNET, HAIKU], id="malformed-first-event"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
@pytest.mark.parametrize("fault, model, fallback, seen", BEFORE_FIRST_TOKEN)
def test_failures_before_the_first_token_are_invisible(gw, claude_emulator, fault, model, fallback, seen, stream):
    claude_emulator.faults({**fault, "model": SONNET})
    if stream:
        r, text = stream_chat(gw.url, API_KEY)
        events = sse_events(text)
        assert events[-1] == (None, "[DONE]")
        assert openai_text(events)
        assert not any(isinstance(d, dict) and "error" in d for _, d in events)
    else:
        r = chat(gw.url, API_KEY)
        assert r.json()["choices"][0]["message"]["content"]
    assert r.status_code == 200
    assert r.headers["x-agentdeploy-model"] == model
    assert r.headers.get("x-agentdeploy-fallback") == fallback
    assert _models(claude_emulator) == seen


MID_STREAM = [
    pytest.param({"cut_after": 2}, r"\((disconnected|truncated_stream)\)", id="cut"),
    pytest.param({"stall_after": 2, "stall_s": 6}, r"\(stall\)", id="stall"),
    pytest.param({"malformed_after": 2}, r"\(malformed_chunk\)", id="malformed"),
    pytest.param({"sse_error": "overloaded_error", "sse_error_after": 2}, r"\(upstream_stream_error\).*overloaded_error|Overloaded", id="overloaded-event"),
]


@pytest.mark.parametrize("fault, pattern", MID_STREAM)
def test_failures_after_the_first_token_end_the_openai_stream_explicitly(gw, claude_emulator, fault, pattern):
    import re

    claude_emulator.faults({**fault, "model": SONNET, "token_delay_s": 0.02})
    r, text = stream_chat(gw.url, API_KEY)
    events = sse_events(text)
    assert r.status_code == 200
    assert openai_text(events)  # the part that arrived
    last = events[-1][1]
    assert isinstance(last, dict) and "error" in last, events[-3:]
    assert re.search(pattern, last["error"]["message"]), last
    assert "prefill" in last["error"]["message"]  # why it was not continued
    assert "[DONE]" not in [d for _, d in events]
    assert _models(claude_emulator) == [SONNET]  # never restarted, never asked to continue


def test_context_length_through_the_translation(gw, claude_emulator):
    claude_emulator.faults({"status": 400, "message": "prompt is too long: 250000 tokens > 200000 maximum", "model": SONNET})
    r = chat(gw.url, API_KEY)
    # Haiku has no larger context, so nothing can take it: the client gets Claude's reason.
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "prompt is too long" in r.json()["error"]["message"]
    assert _models(claude_emulator) == [SONNET]


def test_a_client_error_through_the_translation_is_not_routed_around(gw, claude_emulator):
    claude_emulator.faults({"status": 400, "message": "messages: roles must alternate", "model": SONNET})
    t0 = time.perf_counter()
    r = chat(gw.url, API_KEY)
    assert r.status_code == 400
    assert (r.json()["error"]["type"], r.json()["error"]["message"]) == ("invalid_request_error", "messages: roles must alternate")
    assert _models(claude_emulator) == [SONNET]
    assert time.perf_counter() - t0 < 1.0
