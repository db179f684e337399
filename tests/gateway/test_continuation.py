"""Mid-stream continuation (issue 13, item 1), against stand-in replicas that continue a final
assistant message the way vLLM does: a stream that breaks after its first token is finished on
the other replica, in the same client stream. Real vLLM: test_continuation_vllm.py."""

from __future__ import annotations

import re
import time

import orjson
import pytest
from pydantic import ValidationError

from agentdeploy.serving.config import UpstreamSpec
from tests.gateway.helpers import (
    API_KEY,
    GPU_KEY,
    env_for,
    gateway_config,
    metric_value,
    openai_text,
    sse_events,
    stream_chat,
)

pytestmark = pytest.mark.integration

#: How a cut reads in the client's error: the connection lost, or the stream ended early.
CUT = re.compile(r"failed mid-stream \((disconnected|truncated_stream)\)")
WHOLE = "".join(f"tok{i} " for i in range(6))  # the stand-in's uninterrupted answer


@pytest.fixture
def pair(claude_emulator, standin_factory, gateway_factory):
    """(gateway, the replica every first attempt goes to, the other one, claude)."""

    def make(continuation: bool = True, replicas: int = 2, **kw):
        first, other = standin_factory(), standin_factory()
        urls = [first.base_url, other.base_url][:replicas]
        cfg = gateway_config(claude_emulator.base_url, replicas=urls, vllm={"continuation": continuation}, **kw)
        gw = gateway_factory(cfg, env=env_for(claude_emulator))
        return gw, first, other, claude_emulator

    return make


def _ids(events) -> set:
    return {d["id"] for _, d in events if isinstance(d, dict) and "id" in d}


@pytest.mark.parametrize("fault", [{"cut_after": 3}, {"stall_after": 3, "stall_s": 5}, {"malformed_after": 3}])
def test_a_broken_stream_is_finished_on_the_other_replica(pair, fault):
    gw, first, other, claude = pair()
    # Tokens 20 ms apart: the first token is read alone, so the break lands after it (a garbled
    # chunk read in the same batch as the first token would be a failure before the first token).
    first.fault(**fault, token_delay_s=0.02)
    r, text = stream_chat(gw.url, GPU_KEY, stream_options={"include_usage": True})
    assert r.status_code == 200
    events = sse_events(text)
    assert openai_text(events) == WHOLE
    assert events[-1] == (None, "[DONE]")
    assert not any(isinstance(d, dict) and "error" in d for _, d in events)
    assert len(_ids(events)) == 1  # one answer, one id
    finishes = [c["finish_reason"] for _, d in events if isinstance(d, dict) for c in d.get("choices") or [] if c.get("finish_reason")]
    assert finishes == ["stop"]
    [usage] = [d["usage"] for _, d in events if isinstance(d, dict) and d.get("usage")]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (10, 6)
    [cont] = [q["body"] for q in other.requests]
    assert cont["continue_final_message"] is True
    assert cont["add_generation_prompt"] is False
    assert cont["messages"][-1] == {"role": "assistant", "content": "tok0 tok1 tok2 "}
    assert cont["max_tokens"] == 16 - 3
    assert claude.requests() == []
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_continuations_total", agent="gpu-agent", outcome="continued") == 1
    line = next(orjson.loads(ln) for ln in gw.log_text().splitlines() if ln.startswith("{") and '"continued"' in ln)
    assert line["status"] == 200
    assert line["continued"]


def test_an_anthropic_client_gets_one_stitched_message(pair):
    import httpx

    gw, first, other, claude = pair()
    first.fault(cut_after=2, token_delay_s=0.02)
    body = {"model": "gpu-agent", "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", gw.url + "/v1/messages", json=body, headers={"x-api-key": GPU_KEY}, timeout=20) as r:
        text = "".join(r.iter_text())
    events = sse_events(text)
    names = [n for n, _ in events]
    assert names.count("message_start") == 1
    assert names[-1] == "message_stop"
    assert "error" not in names
    deltas = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert deltas == WHOLE
    [usage] = [d["usage"] for n, d in events if n == "message_delta"]
    assert usage["output_tokens"] == 6


def test_no_other_replica_ends_with_the_real_failure(pair):
    gw, first, other, claude = pair(replicas=1)
    first.fault(cut_after=3, token_delay_s=0.02)
    r, text = stream_chat(gw.url, GPU_KEY)
    events = sse_events(text)
    [err] = [d["error"] for _, d in events if isinstance(d, dict) and "error" in d]
    assert CUT.search(err["message"])
    assert "not continued: no other replica" in err["message"]
    assert events[-1] != (None, "[DONE]")
    assert claude.requests() == []


@pytest.mark.parametrize("fault", [{"ttft_s": 3}, {"status": 500, "times": 3}])
def test_a_failure_before_the_first_token_goes_to_the_other_replica_before_claude(pair, fault):
    """A request that never started on a dying or silent replica is answered by another replica
    of the same model (the answer the client asked that model for), not by the next model."""
    gw, first, other, claude = pair()
    first.fault(**fault)
    r, text = stream_chat(gw.url, GPU_KEY)
    assert r.headers["x-agentdeploy-model"] == "standin"
    assert openai_text(sse_events(text)) == WHOLE
    assert len(other.requests) == 1
    assert claude.requests() == []
    assert metric_value(gw.metrics(), "agentdeploy_gateway_upstream_retries_total", agent="gpu-agent") >= 1


def test_with_every_replica_failing_before_the_first_token_the_chain_moves_on(pair):
    gw, first, other, claude = pair()
    first.fault(ttft_s=3)
    other.fault(ttft_s=3)
    r, text = stream_chat(gw.url, GPU_KEY)
    assert r.headers["x-agentdeploy-model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:ttft_timeout"
    assert (len(first.requests), len(other.requests), len(claude.requests())) == (1, 1, 1)


def test_an_upstream_not_marked_for_continuation_is_never_asked(pair):
    gw, first, other, claude = pair(continuation=False)
    first.fault(cut_after=3, token_delay_s=0.02)
    r, text = stream_chat(gw.url, GPU_KEY)
    [err] = [d["error"] for _, d in sse_events(text) if isinstance(d, dict) and "error" in d]
    assert CUT.search(err["message"])
    assert "cannot continue" in err["message"]
    assert other.requests == []


def test_claude_is_never_asked_to_continue(pair):
    """Current Claude models reject assistant prefill: a Claude stream that breaks mid-answer
    ends with the real failure, and Claude sees exactly one request."""
    gw, first, other, claude = pair()
    claude.faults({"cut_after": 2})
    r, text = stream_chat(gw.url, API_KEY)
    [err] = [d["error"] for _, d in sse_events(text) if isinstance(d, dict) and "error" in d]
    assert CUT.search(err["message"])
    assert "prefill" in err["message"]
    assert "400" not in err["message"]
    assert len(claude.requests()) == 1
    with pytest.raises(ValidationError, match="prefill"):
        UpstreamSpec(kind="anthropic", continuation=True)


def test_at_temperature_0_the_other_replica_replays_and_is_verified(pair):
    gw, first, other, claude = pair()
    first.fault(cut_after=3, token_delay_s=0.02)
    r, text = stream_chat(gw.url, GPU_KEY, temperature=0, stream_options={"include_usage": True})
    events = sse_events(text)
    assert openai_text(events) == WHOLE
    assert events[-1] == (None, "[DONE]")
    assert len(_ids(events)) == 1
    [usage] = [d["usage"] for _, d in events if isinstance(d, dict) and d.get("usage")]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (10, 6)  # the replay's own usage
    [replayed] = [q["body"] for q in other.requests]
    assert "continue_final_message" not in replayed
    assert replayed["messages"][-1]["role"] == "user"


def test_a_replay_that_differs_is_not_sent_on(pair):
    gw, first, other, claude = pair()
    first.fault(cut_after=3, token_delay_s=0.02)
    other.fault(tokens=2)  # the replay says less than the client already holds: not the same answer
    r, text = stream_chat(gw.url, GPU_KEY, temperature=0)
    events = sse_events(text)
    assert openai_text(events) == "tok0 tok1 tok2 "  # nothing of the replay reached the client
    [err] = [d["error"] for _, d in events if isinstance(d, dict) and "error" in d]
    assert CUT.search(err["message"])
    assert "replay" in err["message"]
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_continuations_total", agent="gpu-agent", outcome="replay_mismatch") == 1


def test_which_requests_replay():
    from agentdeploy.serving.continuation import replays

    assert replays({"temperature": 0})
    assert replays({"temperature": 0.0})
    assert replays({"seed": 7, "temperature": 1})
    assert not replays({})
    assert not replays({"temperature": 0.7})
    assert not replays({"seed": True})


def test_a_client_that_leaves_during_a_continuation_is_accounted_and_the_gateway_carries_on(pair):
    import httpx

    gw, first, other, claude = pair()
    first.fault(cut_after=2, tokens=40, token_delay_s=0.02)
    other.fault(tokens=40, token_delay_s=0.05)
    body = {"model": "x", "stream": True, "max_tokens": 60, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=20) as r:
        for line in r.iter_lines():
            if "tok3 " in line:  # text from the continuation: leave mid-way through it
                break
    # The gateway notices at its next writes; its log line says 499 and names the break carried over.
    deadline = time.monotonic() + 10
    while not any('"status":499' in ln for ln in gw.log_text().splitlines()):
        assert time.monotonic() < deadline, gw.log_text()[-2000:]
        time.sleep(0.05)
    line = next(orjson.loads(ln) for ln in gw.log_text().splitlines() if '"status":499' in ln)
    assert line["continued"]
    assert "Traceback" not in gw.log_text()
    assert "internal error" not in gw.log_text()
    r2, text = stream_chat(gw.url, GPU_KEY)
    assert r2.status_code == 200
    assert openai_text(sse_events(text)) == WHOLE
