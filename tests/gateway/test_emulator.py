"""The Claude emulator itself: the API behaviour the gateway tests rely on."""

import time

import httpx
import pytest

from tests.gateway.helpers import sse_events

pytestmark = pytest.mark.integration


def _post(emu, body, path="/v1/messages", key=None, version="2023-06-01", stream=False):
    headers = {"x-api-key": key or emu.api_key}
    if version:
        headers["anthropic-version"] = version
    return httpx.post(emu.base_url + path, json=body, headers=headers, timeout=10)


def _body(**kw):
    return {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hello world"}], **kw}


def test_checks_key_and_version_like_the_api(claude_emulator):
    r = _post(claude_emulator, _body(), key="wrong")
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    r = _post(claude_emulator, _body(), version=None)
    assert r.status_code == 400
    assert "anthropic-version" in r.json()["error"]["message"]
    r = _post(claude_emulator, _body(model="gpt-4"))
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"
    r = _post(claude_emulator, {k: v for k, v in _body().items() if k != "max_tokens"})
    assert r.status_code == 400


def test_stream_event_order_and_usage(claude_emulator):
    r = _post(claude_emulator, _body(stream=True))
    events = sse_events(r.text)
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(d["type"] == n for n, d in events)
    start_usage = events[0][1]["message"]["usage"]
    assert {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation", "output_tokens"} <= set(start_usage)
    assert events[-2][1]["usage"]["output_tokens"] == 12
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_prompt_cache_write_then_read_with_ttl_and_minimum(claude_emulator):
    system = [{"type": "text", "text": "abcd" * 5000, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    first = _post(claude_emulator, _body(system=system)).json()["usage"]
    assert first["cache_creation_input_tokens"] == 5000
    assert first["cache_creation"]["ephemeral_1h_input_tokens"] == 5000
    assert first["cache_read_input_tokens"] == 0
    second = _post(claude_emulator, _body(system=system)).json()["usage"]
    assert second["cache_read_input_tokens"] == 5000
    assert second["cache_creation_input_tokens"] == 0
    small = [{"type": "text", "text": "abcd" * 100, "cache_control": {"type": "ephemeral"}}]
    below = _post(claude_emulator, _body(system=small)).json()["usage"]  # haiku minimum is 4096
    assert below["cache_creation_input_tokens"] == 0
    assert below["cache_read_input_tokens"] == 0
    too_many = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}} for _ in range(5)]
    r = _post(claude_emulator, _body(system=too_many))
    assert r.status_code == 400
    assert "maximum of 4" in r.json()["error"]["message"]


def test_faults_429_with_retry_after_529_and_stream_cut(claude_emulator):
    claude_emulator.faults({"status": 429, "retry_after": 2}, {"status": 529})
    r = _post(claude_emulator, _body())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "rate_limit_error"
    r = _post(claude_emulator, _body())
    assert r.status_code == 529
    assert r.json()["error"]["type"] == "overloaded_error"
    assert _post(claude_emulator, _body()).status_code == 200
    claude_emulator.faults({"cut_after": 3})
    with pytest.raises(httpx.RemoteProtocolError):
        _post(claude_emulator, _body(stream=True))


def test_slow_first_token_fault(claude_emulator):
    claude_emulator.faults({"ttft_s": 0.5})
    t0 = time.perf_counter()
    r = _post(claude_emulator, _body(stream=True))
    assert r.status_code == 200
    assert time.perf_counter() - t0 >= 0.5


def test_count_tokens_and_models(claude_emulator):
    r = _post(claude_emulator, {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "abcdabcd"}]}, path="/v1/messages/count_tokens")
    assert r.json() == {"input_tokens": 2}
    r = httpx.get(claude_emulator.base_url + "/v1/models", headers={"x-api-key": claude_emulator.api_key, "anthropic-version": "2023-06-01"})
    assert "claude-haiku-4-5" in [m["id"] for m in r.json()["data"]]


def test_runs_as_a_subprocess_with_the_same_controls(tmp_path):
    from tests.support.claude import start_claude_subprocess

    handle, proc = start_claude_subprocess(tmp_path / "emu.log", api_key="sk-sub-key-123456")
    try:
        handle.faults({"status": 529})
        assert _post(handle, _body()).status_code == 529
        r = _post(handle, _body())
        assert r.status_code == 200
        assert r.json()["usage"]["output_tokens"] == 12
        assert [q["api_key"] for q in handle.requests()] == ["sk-sub-key-123456"] * 2
    finally:
        handle.stop()
    assert not proc.alive()


def test_wrong_types_are_400s_like_the_api_not_crashes(claude_emulator):
    for bad in ({"messages": [1]}, {"messages": [{"role": "user", "content": [1]}]}, {"system": 5}, {"tools": [1]},
                {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}):
        r = _post(claude_emulator, _body(**bad))
        assert r.status_code == 400, bad
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert all(rec["served"] is None for rec in claude_emulator.requests())  # refused: nothing billed


def test_served_usage_records_what_was_generated_even_when_the_client_leaves(claude_emulator):
    claude_emulator.configure(output_tokens=200, token_delay_s=0.002)
    with httpx.stream("POST", claude_emulator.base_url + "/v1/messages", json=_body(max_tokens=200, stream=True),
                      headers={"x-api-key": claude_emulator.api_key, "anthropic-version": "2023-06-01"}, timeout=10) as r:
        for line in r.iter_lines():
            if line.startswith("event: content_block_delta"):
                break  # leave after the first token
    deadline = time.monotonic() + 10
    while claude_emulator.requests()[-1]["served"] is None:  # recorded once the emulator notices
        assert time.monotonic() < deadline
        time.sleep(0.02)
    served = claude_emulator.requests()[-1]["served"]
    assert served["model"] == "claude-haiku-4-5"
    assert 1 <= served["output_tokens"] < 200
    assert served["input_tokens"] > 0
    r = _post(claude_emulator, _body(max_tokens=20))
    assert claude_emulator.requests()[-1]["served"]["output_tokens"] == r.json()["usage"]["output_tokens"]
