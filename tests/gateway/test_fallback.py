"""The gateway as a real process in front of a stand-in OpenAI server and the Claude emulator:
routing, every fallback trigger, streams, breakers, overload."""

import json
import random
import threading
import time

import httpx
import pytest

from agentdeploy.serving import fallback as fb
from tests.gateway.helpers import (
    API_KEY,
    GPU_KEY,
    SHARED_KEY,
    chat,
    env_for,
    gateway_config,
    messages,
    metric_value,
    openai_text,
    sse_events,
    stream_chat,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(claude_emulator, standin_factory, gateway_factory):
    """(gateway, stand-in vLLM, claude) with the default two-agent config."""

    def make(**kw):
        st = standin_factory()
        gw = gateway_factory(gateway_config(claude_emulator.base_url, replicas=[st.base_url], **kw), env=env_for(claude_emulator))
        return gw, st, claude_emulator

    return make


def test_routes_each_agent_and_reports_the_model_that_answered(setup):
    gw, st, claude = setup()
    r = chat(gw.url, API_KEY)
    assert r.status_code == 200
    assert r.headers["x-agentdeploy-model"] == "claude-sonnet-4-6"
    assert r.json()["model"] == "claude-sonnet-4-6"
    assert claude.requests()[-1]["api_key"] == claude.api_key
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.headers["x-agentdeploy-upstream"] == "vllm"
    assert r.json()["model"] == "standin"
    assert "x-agentdeploy-fallback" not in r.headers
    assert float(r.headers["x-agentdeploy-overhead-ms"]) >= 0
    r = messages(gw.url, GPU_KEY)  # Anthropic client, OpenAI-compatible upstream
    assert r.status_code == 200
    assert r.json()["content"][0]["text"].startswith("tok0")
    assert r.json()["model"] == "standin"
    r = chat(gw.url, SHARED_KEY, model="api-agent")  # a shared key addresses an agent by name
    assert r.headers["x-agentdeploy-agent"] == "api-agent"


def test_auth_rejects_before_any_upstream_is_called(setup):
    gw, st, claude = setup()
    assert chat(gw.url, "wrong-key").status_code == 401
    assert httpx.post(gw.url + "/v1/chat/completions", json={"messages": []}).status_code == 401
    assert messages(gw.url, "wrong-key").json()["type"] == "error"
    r = chat(gw.url, API_KEY, model="gpu-agent")
    assert r.status_code == 403
    assert st.requests == []
    assert claude.requests() == []
    models = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {SHARED_KEY}"}).json()
    assert {m["id"] for m in models["data"]} == {"api-agent", "gpu-agent"}


def test_max_tokens_default_clamp_and_reject(setup):
    gw, st, claude = setup()
    chat(gw.url, API_KEY)
    assert claude.requests()[-1]["body"]["max_tokens"] == 64  # the plan's default
    chat(gw.url, API_KEY, max_tokens=10_000)
    assert claude.requests()[-1]["body"]["max_tokens"] == 256  # clamped to the cap
    gw2, _, _ = setup(api_agent={"over_cap": "reject"})
    r = chat(gw2.url, API_KEY, max_tokens=10_000)
    assert r.status_code == 400
    assert "cap of 256" in r.json()["error"]["message"]


def test_no_healthy_replica_goes_straight_to_claude(claude_emulator, gateway_factory):
    gw = gateway_factory(gateway_config(claude_emulator.base_url, replicas=[]), env=env_for(claude_emulator))
    t0 = time.perf_counter()
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.headers["x-agentdeploy-model"] == "claude-haiku-4-5"
    assert "vllm:no_healthy_replica" in r.headers["x-agentdeploy-fallback"]
    assert time.perf_counter() - t0 < 0.5


def test_server_error_falls_back_and_is_not_billed(setup):
    gw, st, claude = setup()
    st.fault(status=503, times=2)  # the first 503 is retried once on the same upstream
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:server_error"
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_fallbacks_total", agent="gpu-agent", reason="server_error") == 1


def test_a_failed_priced_attempt_is_not_billed_and_the_answer_is(setup):
    """Sonnet (priced) fails before its first token, Haiku answers: only Haiku's usage is cost."""
    chain = [{"upstream": "anthropic", "model": "claude-sonnet-4-6"}, {"upstream": "anthropic", "model": "claude-haiku-4-5"}]
    gw, st, claude = setup(api_agent={"chain": chain, "max_retries_per_upstream": 0})
    claude.faults({"model": "claude-sonnet-4-6", "status": 500})
    claude.faults({"model": "claude-sonnet-4-6", "sse_error": "api_error"})  # a 200, then an in-band error
    r1, r2 = chat(gw.url, API_KEY), messages(gw.url, API_KEY)
    assert [r.status_code for r in (r1, r2)] == [200, 200]
    assert r1.json()["model"] == r2.json()["model"] == "claude-haiku-4-5"
    assert [q["body"]["model"] for q in claude.requests()] == ["claude-sonnet-4-6", "claude-haiku-4-5"] * 2
    u1, u2 = r1.json()["usage"], r2.json()["usage"]
    expected = (u1["prompt_tokens"] + u2["input_tokens"]) * 1e-6 + (u1["completion_tokens"] + u2["output_tokens"]) * 5e-6
    m = gw.metrics()
    assert 'agentdeploy_gateway_cost_usd_total{' in m
    assert expected > 0
    assert metric_value(m, "agentdeploy_gateway_cost_usd_total", agent="api-agent", model="claude-haiku-4-5") == pytest.approx(expected)
    assert metric_value(m, "agentdeploy_gateway_cost_usd_total", agent="api-agent", model="claude-sonnet-4-6") == 0


def test_in_band_overload_before_the_first_token_is_retried_like_a_529(setup):
    gw, st, claude = setup()
    claude.faults({"sse_error": "overloaded_error"})
    r = messages(gw.url, API_KEY)
    assert r.status_code == 200
    assert r.json()["content"][0]["text"]
    assert len(claude.requests()) == 2  # retried on the same upstream after a backoff, as a 529 is
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_upstream_errors_total", agent="api-agent", reason="overloaded") == 1


def test_in_band_error_after_the_first_token_ends_the_stream_explicitly(setup):
    gw, st, claude = setup()
    # Spaced tokens, so the first ones reach the client before the error (in one read they
    # would not have: the gateway then retries invisibly, as the test above shows).
    claude.faults({"sse_error": "overloaded_error", "sse_error_after": 3, "token_delay_s": 0.05})
    r, text = stream_chat(gw.url, API_KEY)
    events = sse_events(text)
    assert r.status_code == 200
    assert openai_text(events)  # bytes were already sent: no restart
    assert "error" in events[-1][1]
    assert "[DONE]" not in [d for _, d in events]
    assert len(claude.requests()) == 1


def test_claude_refusal_reaches_each_client_as_its_own_stop_reason(setup):
    gw, st, claude = setup()
    claude.faults({"refusal": True, "times": 3})
    r = chat(gw.url, API_KEY)
    assert r.status_code == 200
    assert r.json()["choices"][0]["finish_reason"] == "content_filter"
    r, text = stream_chat(gw.url, API_KEY)
    finishes = [d["choices"][0]["finish_reason"] for _, d in sse_events(text) if isinstance(d, dict) and d.get("choices")]
    assert "content_filter" in finishes
    r = messages(gw.url, API_KEY)
    assert r.json()["stop_reason"] == "refusal"
    assert len(claude.requests()) == 3  # a refusal is an answer: never retried or sent elsewhere


def test_slow_first_token_falls_back_within_the_ttft_limit(setup):
    gw, st, claude = setup()
    st.fault(ttft_s=3.0)
    t0 = time.perf_counter()
    r, text = stream_chat(gw.url, GPU_KEY)
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200
    assert r.headers["x-agentdeploy-model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:ttft_timeout"
    assert elapsed < 2.5  # 1 s TTFT limit + Claude, not the 3 s stall
    events = sse_events(text)
    assert events[-1][1] == "[DONE]"
    assert openai_text(events)


def test_stall_before_first_token_and_malformed_first_chunk_fall_back(setup):
    gw, st, claude = setup()
    st.fault(malformed_after=1, tokens=1)
    r = chat(gw.url, GPU_KEY)
    # the malformed chunk arrived after one valid token: non-streaming clients still get a clean answer
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:malformed_chunk"


def test_stream_stall_after_bytes_ends_with_explicit_error(setup):
    gw, st, claude = setup()
    st.fault(stall_after=2, stall_s=5)
    t0 = time.perf_counter()
    r, text = stream_chat(gw.url, GPU_KEY)
    assert time.perf_counter() - t0 < 4  # stall timeout 1 s, not the 5 s stall
    events = sse_events(text)
    assert openai_text(events).startswith("tok0 tok1")
    assert "[DONE]" not in [d for _, d in events]
    assert "stall" in events[-1][1]["error"]["message"]
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_stream_errors_total", reason="stall") == 1


def test_non_streaming_stall_mid_answer_is_retried_on_claude(setup):
    gw, st, claude = setup()
    st.fault(stall_after=2, stall_s=5)
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:stall"


def test_malformed_chunk_mid_stream_is_an_error_not_a_clean_end(setup):
    gw, st, claude = setup()
    st.fault(malformed_after=3, token_delay_s=0.03)  # spaced out: the bad chunk comes after bytes went out
    r, text = stream_chat(gw.url, GPU_KEY)
    events = sse_events(text)
    assert events[-1][1]["error"]["type"] == "upstream_error"
    assert "malformed" in events[-1][1]["error"]["message"]
    assert "[DONE]" not in [d for _, d in events]
    # tok2 is written right before the bad chunk (usually one read): it still reaches the client
    assert openai_text(events) == "tok0 tok1 tok2 "


@pytest.mark.parametrize("fault, reason", [
    ({"malformed_after": 3}, "malformed"),
    ({"stall_after": 3, "stall_s": 6}, "stall"),
    ({"cut_after": 3}, "disconnected"),
])
def test_claude_failing_mid_stream_ends_each_protocol_explicitly(setup, fault, reason):
    """The Anthropic side of the same guards: Claude's stream breaks after bytes went out."""
    gw, st, claude = setup()
    claude.faults({**fault, "token_delay_s": 0.03, "times": 2})
    r, text = stream_chat(gw.url, API_KEY)
    events = sse_events(text)
    assert openai_text(events).count(" ") == 3  # the three deltas before the fault arrived
    assert "[DONE]" not in [d for _, d in events] and reason in events[-1][1]["error"]["message"], events[-2:]
    with httpx.stream("POST", gw.url + "/v1/messages", timeout=10, headers={"x-api-key": API_KEY},
                      json={"model": "x", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as resp:
        names = [name for name, _ in sse_events(resp.read().decode())]
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert len(claude.requests()) == 2  # bytes had gone out: never restarted elsewhere


def test_cut_stream_ends_with_anthropic_error_event(setup):
    gw, st, claude = setup()
    st.fault(cut_after=2)
    with httpx.stream("POST", gw.url + "/v1/messages", json={"model": "x", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                      headers={"x-api-key": GPU_KEY}, timeout=10) as r:
        text = "".join(r.iter_text())
    names = [n for n, _ in sse_events(text)]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names


def test_missing_done_after_a_finished_answer_is_complete(setup):
    gw, st, claude = setup()
    st.fault(no_done=True)
    r, text = stream_chat(gw.url, GPU_KEY)
    events = sse_events(text)
    assert events[-1][1] == "[DONE]"  # the client gets a proper end: the answer had its finish_reason
    assert not any(isinstance(d, dict) and "error" in d for _, d in events)


def test_claude_429_retry_after_is_honoured_when_it_fits(setup):
    gw, st, claude = setup()
    claude.faults({"status": 429, "retry_after": 0.3})
    t0 = time.perf_counter()
    r = chat(gw.url, API_KEY)
    assert r.status_code == 200
    assert time.perf_counter() - t0 >= 0.3
    assert len(claude.requests()) == 2


def test_claude_429_longer_than_the_budget_is_returned_at_once(setup):
    gw, st, claude = setup(api_agent={"deadline_s": 2.0})
    claude.faults({"status": 429, "retry_after": 30})
    t0 = time.perf_counter()
    r = chat(gw.url, API_KEY)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30"
    assert time.perf_counter() - t0 < 1.0
    assert len(claude.requests()) == 1


def test_529_backs_off_with_jitter_then_succeeds(setup):
    gw, st, claude = setup()
    claude.faults({"status": 529, "times": 2})
    r = messages(gw.url, API_KEY)
    seen = claude.requests()
    assert r.status_code == 200
    assert len(seen) == 3
    gaps = [b["received_s"] - a["received_s"] for a, b in zip(seen, seen[1:], strict=False)]
    # Full jitter over an exponential base: wait k is uniform in [0.5, 1] x 0.25 x 2^k seconds.
    assert 0.125 <= gaps[0] < 2.0 and 0.25 <= gaps[1] < 2.0, gaps  # lower bounds are the backoff; upper ones only catch a hang


def test_retry_wait_is_jittered_exponential_and_capped():
    waits = [[fb.retry_wait(fb.Failed(fb.OVERLOADED), k, random.Random(seed)) for k in range(6)] for seed in range(20)]
    for k in range(6):
        base = min(4.0, 0.25 * 2**k)
        assert all(0.5 * base <= w[k] <= base for w in waits)
        assert len({round(w[k], 6) for w in waits}) > 10  # jittered: clients do not retry in lockstep
    assert fb.retry_wait(fb.Failed(fb.RATE_LIMITED, retry_after=2.5), 0) == 2.5  # Retry-After wins


def test_context_length_routes_to_a_larger_context_model(setup):
    gw, st, claude = setup()
    st.fault(status=400, message="This model's maximum context length is 512 tokens. However, you requested 900 tokens.", error_type="BadRequestError")
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    assert "context_length" in r.headers["x-agentdeploy-fallback"]


def test_content_filter_is_propagated_not_retried(setup):
    gw, st, claude = setup()
    st.fault(status=400, message="flagged by content filter", error_type="content_filter")
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "content_filter"
    assert "flagged" in r.json()["error"]["message"]
    assert claude.requests() == []
    assert len(st.requests) == 1


def test_predicted_overload_spills_to_claude(setup):
    gw, st, claude = setup(vllm={"max_load_per_replica": 4})
    st.waiting = 10
    time.sleep(0.6)  # a few /metrics polls
    r = chat(gw.url, GPU_KEY)
    assert r.json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:overload"
    st.waiting = 0
    time.sleep(0.6)
    assert chat(gw.url, GPU_KEY).json()["model"] == "standin"


def test_a_queue_longer_than_the_first_token_budget_spills_to_claude(setup):
    """No static cap here: the replica drains 20 requests/s, the entry allows 1 s to the first
    token. 3 queued (0.2 s) is fine; 60 queued (3 s) would eat the budget, so Claude answers at
    once instead of after a wasted second."""
    gw, st, claude = setup()
    st.finish_rate, st.waiting = 20.0, 3
    time.sleep(0.8)  # a few 0.2 s polls: the gateway has measured the rate
    assert chat(gw.url, GPU_KEY).json()["model"] == "standin"
    st.waiting = 60
    time.sleep(0.5)
    r = chat(gw.url, GPU_KEY)
    assert r.json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == "vllm:overload"
    assert len(st.requests) == 1  # never sent to the queued replica
    st.waiting = 0
    time.sleep(0.5)
    assert chat(gw.url, GPU_KEY).json()["model"] == "standin"


def test_load_balances_by_load_across_replicas(claude_emulator, standin_factory, gateway_factory):
    a, b = standin_factory("standin"), standin_factory("standin")
    a.waiting = 3
    gw = gateway_factory(gateway_config(claude_emulator.base_url, replicas=[a.base_url, b.base_url]), env=env_for(claude_emulator))
    time.sleep(0.6)
    for _ in range(4):
        chat(gw.url, GPU_KEY)
    assert len(b.requests) == 4
    assert len(a.requests) == 0


def test_flapping_primary_that_never_fails_twice_in_a_row_is_cut_off(setup):
    """Every other request fails: the consecutive-failure rule never fires, the failure rate does."""
    gw, st, claude = setup(breaker={"failure_threshold": 3, "window": 10, "failure_rate": 0.5, "open_s": 60.0})
    for i in range(40):
        st.fault(**({"status": 500} if i % 2 == 0 else {}))
    results = [chat(gw.url, GPU_KEY) for _ in range(20)]
    assert all(r.status_code == 200 for r in results)
    # Outcomes F,S,F,S...: the 11th request fails with 5 failures in the last 10 -> open, no more traffic.
    assert len(st.requests) == 11
    assert [r.json()["model"] for r in results[11:]] == ["claude-haiku-4-5"] * 9
    assert results[11].headers["x-agentdeploy-fallback"] == "vllm:no_healthy_replica"
    m = gw.metrics()
    assert "agentdeploy_gateway_circuit_state{" in m
    assert metric_value(m, "agentdeploy_gateway_circuit_state", upstream="vllm") == 2


def test_dead_primary_is_cut_off_then_traffic_returns(setup):
    gw, st, claude = setup()
    st.fault(status=500, times=-1)
    results = [chat(gw.url, GPU_KEY) for _ in range(8)]
    assert all(r.status_code == 200 for r in results)
    assert all(r.json()["model"] == "claude-haiku-4-5" for r in results)
    # the breaker (threshold 2) stops sending to the broken replica: far fewer than 8 attempts
    assert len(st.requests) <= 4
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_circuit_state", upstream="vllm") in (1, 2)
    st.faults.clear()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if chat(gw.url, GPU_KEY).json()["model"] == "standin":
            break
        time.sleep(0.2)
    else:
        pytest.fail("traffic never returned to the recovered replica")
    assert chat(gw.url, GPU_KEY).json()["model"] == "standin"


def test_replicas_file_and_config_reload_without_restart(claude_emulator, standin_factory, gateway_factory, tmp_path):
    st = standin_factory()
    replicas = tmp_path / "replicas.txt"
    replicas.write_text("")
    cfg = gateway_config(claude_emulator.base_url, replicas=[], replicas_file=str(replicas))
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    assert chat(gw.url, GPU_KEY).json()["model"] == "claude-haiku-4-5"
    replicas.write_text(f"# fleet\n{st.base_url}\n")
    time.sleep(0.8)
    assert chat(gw.url, GPU_KEY).json()["model"] == "standin"
    # SIGHUP reload: change the api agent's model while a stream is in flight
    claude_emulator.configure(token_delay_s=0.05)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=stream_chat(gw.url, API_KEY)))
    t.start()
    time.sleep(0.2)
    cfg["agents"]["api-agent"]["chain"] = [{"upstream": "anthropic", "model": "claude-haiku-4-5"}]
    gw.reload(cfg, settle_s=0.5)
    t.join(10)
    r, text = box["r"]
    assert sse_events(text)[-1][1] == "[DONE]"  # the in-flight stream was not dropped
    claude_emulator.configure(token_delay_s=0.0)
    assert chat(gw.url, API_KEY).json()["model"] == "claude-haiku-4-5"
    assert "config reloaded" in gw.log_text()
    gw.config_path.write_text("agents: [broken")  # a bad reload is refused; the old config keeps serving
    gw.reload(settle_s=0.5)
    assert chat(gw.url, API_KEY).status_code == 200
    assert "config reload rejected" in gw.log_text()


def test_last_resort_upstream_is_tried_even_when_its_breaker_is_open(setup):
    gw, st, claude = setup(api_agent={"max_retries_per_upstream": 0})  # no retry of the 500s
    claude.faults({"status": 500, "times": 3})
    codes = [chat(gw.url, API_KEY).status_code for _ in range(3)]
    assert codes == [502, 502, 502]
    r = chat(gw.url, API_KEY)  # breaker is open (threshold 2), but there is nothing after Claude
    assert r.status_code == 200
    assert len(claude.requests()) == 4
    assert "no upstream could answer" not in r.text


def test_finished_answer_whose_stream_then_hangs_ends_cleanly(setup):
    gw, st, claude = setup()
    st.fault(no_done=True, hang_end_s=3)  # finish_reason sent, then neither [DONE] nor EOF
    t0 = time.perf_counter()
    r, text = stream_chat(gw.url, GPU_KEY)
    events = sse_events(text)
    assert events[-1][1] == "[DONE]"
    assert not any(isinstance(d, dict) and "error" in d for _, d in events)
    assert time.perf_counter() - t0 < 2.5  # ended after the 1 s stall timeout, not the 3 s hang


def test_tool_call_from_claude_reaches_an_openai_client_as_tool_calls(setup):
    gw, st, claude = setup()
    claude.faults({"tool_call": {"name": "lookup_order", "input": {"order_id": 42}}, "output_tokens": 2})
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
    r, text = stream_chat(gw.url, API_KEY, tools=tools)
    chunks = [d for _, d in sse_events(text) if isinstance(d, dict)]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0]["function"]["name"] == "lookup_order"
    assert calls[0]["id"].startswith("toolu_")
    assert "".join(c["function"]["arguments"] for c in calls) == '{"order_id":42}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    sent = claude.requests()[-1]["body"]
    assert sent["tools"][0]["name"] == "lookup_order"
    assert sent["tools"][0]["input_schema"] == {"type": "object"}


def test_alert_policy_admits_everything_and_logs_thresholds(claude_emulator, gateway_factory):
    cfg = gateway_config(claude_emulator.base_url, api_agent={"budget": {"monthly_usd": 0.0005, "policy": "alert", "thresholds_pct": [50, 100]}})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    assert all(chat(gw.url, API_KEY).status_code == 200 for _ in range(5))
    time.sleep(0.3)
    log = gw.log_text()
    assert '"event":"budget_threshold"' in log
    assert '"threshold_pct":100' in log
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_budget_remaining_usd", agent="api-agent") < 0


def test_vllm_tool_call_reaches_an_anthropic_client_as_tool_use(setup):
    """OpenAI-side tool_calls (streamed id/name, then JSON arguments in pieces) become an
    Anthropic tool_use block with its parsed input and stop_reason tool_use, in both modes."""
    gw, st, claude = setup()
    call = {"name": "get_price", "arguments": {"sku": "A-17", "qty": 3}}
    tools = [{"name": "get_price", "description": "price lookup", "input_schema": {"type": "object"}}]
    st.fault(tool_call=call, times=2)
    r = messages(gw.url, GPU_KEY, "price of A-17?", tools=tools)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stop_reason"] == "tool_use"
    use = [b for b in body["content"] if b["type"] == "tool_use"]
    assert len(use) == 1
    assert use[0]["name"] == "get_price"
    assert use[0]["input"] == call["arguments"]
    assert use[0]["id"]
    assert st.requests[-1]["body"]["tools"][0]["function"]["name"] == "get_price"  # tools went across too
    with httpx.stream("POST", gw.url + "/v1/messages", timeout=10, headers={"x-api-key": GPU_KEY},
                      json={"model": "x", "max_tokens": 32, "stream": True, "tools": tools,
                            "messages": [{"role": "user", "content": "price of A-17?"}]}) as resp:
        events = sse_events(resp.read().decode())
    starts = [d["content_block"] for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use"]
    assert len(starts) == 1
    assert starts[0]["name"] == "get_price"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
    assert json.loads(partial) == call["arguments"]
    stop = [d["delta"]["stop_reason"] for n, d in events if n == "message_delta"]
    assert stop == ["tool_use"]
    assert events[-1][0] == "message_stop"
