"""Smoke test of the real vLLM-on-CPU server every integration test builds on.

If these fail, the environment (scripts/setup-vllm.sh, the tiny model) is broken, not the code
under test: the gateway and node-agent tests rely on exactly these behaviours.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.vllm import VllmServer

pytestmark = [pytest.mark.integration, pytest.mark.vllm]


def _chat_body(server: VllmServer, **extra) -> dict:
    return {
        "model": server.served_name,
        "messages": [{"role": "user", "content": "Which day can I book?"}],
        "max_tokens": 12,
        "ignore_eos": True,  # vLLM sampling extra: a random model must not stop early by chance
        **extra,
    }


def test_chat_completion_answers_with_usage(vllm_server: VllmServer) -> None:
    r = httpx.post(f"{vllm_server.base_url}/v1/chat/completions", json=_chat_body(vllm_server), timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == vllm_server.served_name
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 12
    assert body["usage"]["prompt_tokens"] > 0


def test_stream_ends_with_usage_chunk_then_done(vllm_server: VllmServer) -> None:
    body = _chat_body(vllm_server, stream=True, stream_options={"include_usage": True})
    lines: list[str] = []
    with httpx.stream("POST", f"{vllm_server.base_url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 12
    content_chunks = [c for c in chunks[:-1] if c["choices"]]
    assert content_chunks, "no content chunks before the usage chunk"
    assert content_chunks[-1]["choices"][0]["finish_reason"] == "length"
    # Several tokens may share a chunk under load: compare text, never count chunks as tokens.
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in content_chunks)
    assert text


def test_metrics_expose_queue_gauges(vllm_server: VllmServer) -> None:
    r = httpx.get(f"{vllm_server.base_url}/metrics", timeout=10)
    assert r.status_code == 200
    names = {line.split("{")[0].split(" ")[0] for line in r.text.splitlines() if line.startswith("vllm:")}
    assert {"vllm:num_requests_waiting", "vllm:num_requests_running"} <= names


def test_unknown_model_is_404_and_models_lists_served_name(vllm_server: VllmServer) -> None:
    r = httpx.post(
        f"{vllm_server.base_url}/v1/chat/completions",
        json={**_chat_body(vllm_server), "model": "no-such-model"},
        timeout=30,
    )
    assert r.status_code == 404
    models = httpx.get(f"{vllm_server.base_url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [vllm_server.served_name]
