"""Prompt-cache breakpoints, cost accounting from real usage, budgets (memory and Redis)."""

import concurrent.futures as cf
import threading
import time

import httpx
import pytest

from tests.gateway.helpers import (
    API_KEY,
    GPU_KEY,
    SONNET,
    chat,
    env_for,
    gateway_config,
    messages,
    metric_value,
    sse_events,
    stream_chat,
)

pytestmark = pytest.mark.integration

SYSTEM = "abcd" * 3000  # 3000 tokens: above Sonnet's 2048 minimum, below Haiku's 4096


def test_breakpoints_on_static_prefix_and_cache_costs_priced(claude_emulator, standin_factory, gateway_factory):
    st = standin_factory()
    cfg = gateway_config(claude_emulator.base_url, replicas=[st.base_url],
                         api_agent={"cache": {"enabled": True, "ttl": "1h", "breakpoints": ["system", "conversation"]}},
                         gpu_agent={"cache": {"enabled": True, "ttl": "5m", "breakpoints": ["system"]}})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    convo = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    first = httpx.post(gw.url + "/v1/chat/completions", json={"model": "x", "messages": convo}, headers={"authorization": f"Bearer {API_KEY}"}).json()
    sent = claude_emulator.requests()[-1]["body"]
    assert sent["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert sent["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "x", "messages": convo}, headers={"authorization": f"Bearer {API_KEY}"})
    second = r.json()
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= 3000  # read from cache
    # cost header = reads at 0.1x + uncached input + output, at Sonnet prices
    u = second["usage"]
    cached = u["prompt_tokens_details"]["cached_tokens"]
    expected = cached * SONNET["cache_read"] + (u["prompt_tokens"] - cached) * SONNET["input"] + u["completion_tokens"] * SONNET["output"]
    assert float(r.headers["x-agentdeploy-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_tokens_total", agent="api-agent", type="cache_write_1h") >= 3000
    assert metric_value(m, "agentdeploy_gateway_tokens_total", agent="api-agent", type="cache_read") >= 3000
    # vLLM gets no cache_control; Claude fallback for the gpu agent is below Haiku's minimum: none either
    chat(gw.url, GPU_KEY, content="x")
    assert "cache_control" not in str(st.requests[-1]["body"])
    st.fault(status=500, times=2)  # the first 500 is retried once on vLLM (issue 13)
    httpx.post(gw.url + "/v1/chat/completions", json={"model": "x", "messages": convo}, headers={"authorization": f"Bearer {GPU_KEY}"})
    assert "cache_control" not in str(claude_emulator.requests()[-1]["body"])


def test_streaming_usage_with_cache_writes_is_accounted(claude_emulator, gateway_factory):
    cfg = gateway_config(claude_emulator.base_url, api_agent={"cache": {"enabled": True, "ttl": "5m", "breakpoints": ["system"]}})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    with httpx.stream("POST", gw.url + "/v1/messages", headers={"x-api-key": API_KEY},
                      json={"model": "x", "max_tokens": 20, "stream": True, "system": SYSTEM, "messages": [{"role": "user", "content": "hi"}]}) as r:
        events = sse_events("".join(r.iter_text()))
    usage = [d for n, d in events if n == "message_delta"][0]["usage"]
    assert usage["cache_creation_input_tokens"] == 3000
    assert usage["cache_creation"]["ephemeral_5m_input_tokens"] == 3000
    m = gw.metrics()
    expected = 3000 * SONNET["cache_write_5m"] + usage["input_tokens"] * SONNET["input"] + usage["output_tokens"] * SONNET["output"]
    assert metric_value(m, "agentdeploy_gateway_cost_usd_total", agent="api-agent") == pytest.approx(expected, rel=1e-6)


def test_block_policy_refuses_with_machine_readable_error(claude_emulator, gateway_factory):
    # each answer really costs ~$0.0002 (12 output tokens at Sonnet's $15/Mtok); the worst case
    # reserved at admission is ~$0.0012 (64 max_tokens), so admission stops while it no longer fits
    cfg = gateway_config(claude_emulator.base_url, api_agent={"budget": {"monthly_usd": 0.0025, "policy": "block"}})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    codes = []
    for _ in range(30):
        codes.append(chat(gw.url, API_KEY).status_code)
        if codes[-1] == 429:
            break
    assert codes[0] == 200
    assert codes[-1] == 429
    m = gw.metrics()
    spent = metric_value(m, "agentdeploy_gateway_cost_usd_total", agent="api-agent")
    assert spent <= 0.0025
    assert spent + 0.0012 > 0.0025 - 0.0003  # stopped only when the next worst case no longer fit
    r = chat(gw.url, API_KEY)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "budget_exceeded"
    assert r.headers["x-agentdeploy-error"] == "budget_exceeded"
    r = messages(gw.url, API_KEY, max_tokens=200)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "budget_exceeded"
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_budget_remaining_usd", agent="api-agent") < 0.0025
    assert metric_value(m, "agentdeploy_gateway_budget_rejections_total", agent="api-agent", action="blocked") >= 2


def test_degrade_policy_moves_to_the_cheaper_model(claude_emulator, gateway_factory):
    cfg = gateway_config(claude_emulator.base_url, api_agent={"budget": {"monthly_usd": 0.0015, "policy": "degrade",
                                                                         "degrade_chain": [{"upstream": "anthropic", "model": "claude-haiku-4-5"}]}})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    models = [chat(gw.url, API_KEY).headers.get("x-agentdeploy-model") for _ in range(4)]
    assert models[0] == "claude-sonnet-4-6"
    assert "claude-haiku-4-5" in models[1:]


def _concurrent_streams(url: str, n: int, key: str) -> list[int]:
    def one(_):
        with httpx.stream("POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "x", "stream": True, "messages": [{"role": "user", "content": "go"}]}, timeout=30) as r:
            "".join(r.iter_text())
            return r.status_code

    with cf.ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def test_budget_race_concurrent_streams_two_gateways_share_redis(claude_emulator, gateway_factory, fresh_redis_url):
    """20 concurrent slow streams over two gateway replicas: the budget holds exactly what it can reserve."""
    import redis

    claude_emulator.configure(token_delay_s=0.02, output_tokens=40)  # streams overlap in time
    budget = {"monthly_usd": 0.006, "policy": "block"}
    store = {"backend": "redis", "redis_url": {"env": "TEST_REDIS_URL"}, "key_prefix": "race"}
    cfg = gateway_config(claude_emulator.base_url, api_agent={"budget": budget, "max_tokens_default": 64}, budget_store=store)
    env = {**env_for(claude_emulator), "TEST_REDIS_URL": fresh_redis_url}
    a, b = gateway_factory(cfg, env=env), gateway_factory(cfg, env=env)
    with cf.ThreadPoolExecutor(2) as ex:
        fa, fb = ex.submit(_concurrent_streams, a.url, 10, API_KEY), ex.submit(_concurrent_streams, b.url, 10, API_KEY)
        codes = fa.result() + fb.result()
    admitted = codes.count(200)
    # worst case per request ≈ (prompt estimate ~30 tokens * 6e-6) + 64 * 15e-6 ≈ $0.00114 -> at most 5 fit in $0.006
    assert 1 <= admitted <= 5
    assert codes.count(429) == 20 - admitted
    r = redis.Redis.from_url(fresh_redis_url)
    key = [k for k in r.keys("race:*") if not k.endswith(b":spent")][0]
    for gw in (a, b):  # nothing in flight: /metrics then answers once every settlement is written
        deadline = time.monotonic() + 10
        while metric_value(gw.metrics(), "agentdeploy_gateway_in_flight") != 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        gw.metrics()  # awaits the settlements spawned as the last requests ended
    spent = int(r.get(key + b":spent")) / 1e6
    committed = int(r.get(key)) / 1e6
    assert spent <= 0.006
    assert committed == pytest.approx(spent, abs=1e-6)  # all reservations settled to actual
    per_request = (40 * SONNET["output"])
    assert spent >= admitted * per_request  # actual output was billed


def test_unreachable_redis_fails_closed_for_block_and_open_for_alert(claude_emulator, gateway_factory):
    """No traceback, no unhandled 500: a blocking budget that cannot be checked refuses with a
    machine-readable 503; an alert-only budget still answers; /metrics still answers."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    store = {"backend": "redis", "redis_url": {"env": "TEST_REDIS_URL"}}
    cfg = gateway_config(claude_emulator.base_url, budget_store=store,
                         api_agent={"budget": {"monthly_usd": 5.0, "policy": "block"}},
                         gpu_agent={"budget": {"monthly_usd": 5.0, "policy": "alert"},
                                    "chain": [{"upstream": "anthropic", "model": "claude-haiku-4-5"}]})
    gw = gateway_factory(cfg, env={**env_for(claude_emulator), "TEST_REDIS_URL": f"redis://127.0.0.1:{dead_port}/0"})
    r = chat(gw.url, API_KEY)
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "budget_store_unavailable"
    assert r.headers["x-agentdeploy-error"] == "budget_store_unavailable"
    assert r.headers["retry-after"] == "1"
    r = messages(gw.url, API_KEY)
    assert r.status_code == 503
    assert r.json()["type"] == "error"
    assert claude_emulator.requests() == []  # refused before any upstream was called
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_budget_rejections_total", agent="api-agent", action="store_unavailable") == 2
    assert metric_value(m, "agentdeploy_gateway_budget_rejections_total", agent="gpu-agent", action="store_unavailable") == 1
    assert "Traceback" not in gw.log_text()


def test_metrics_health_and_readiness(claude_emulator, gateway_factory):
    gw = gateway_factory(gateway_config(claude_emulator.base_url, replicas=[]), env=env_for(claude_emulator))
    chat(gw.url, GPU_KEY)
    stream_chat(gw.url, API_KEY)
    m = gw.metrics()
    # Samples, not just the # HELP lines that are written even for series nobody touched.
    for name in ("requests_total", "fallbacks_total", "ttft_seconds_bucket", "request_seconds_count", "tokens_total", "cost_usd_total", "overhead_seconds_bucket"):
        assert metric_value(m, f"agentdeploy_gateway_{name}") > 0, name
    assert any(line.startswith("agentdeploy_gateway_in_flight ") for line in m.splitlines())
    assert metric_value(m, "agentdeploy_gateway_requests_total", agent="gpu-agent", upstream="anthropic", status="200") == 1
    assert metric_value(m, "agentdeploy_gateway_fallbacks_total", agent="gpu-agent", reason="no_healthy_replica") == 1
    assert httpx.get(gw.url + "/healthz").status_code == 200
    assert httpx.get(gw.url + "/readyz").status_code == 200


def test_upstream_key_never_appears_in_logs_metrics_or_config(claude_emulator, standin_factory, gateway_factory):
    canary = "sk-ant-CANARY-7f3c9e1b2d4a"
    claude_emulator.configure(api_keys=[canary])
    st = standin_factory()
    cfg = gateway_config(claude_emulator.base_url, replicas=[st.base_url])
    gw = gateway_factory(cfg, env={"TEST_ANTHROPIC_KEY": canary}, log_level="debug")
    st.fault(status=500, times=2)  # retried once, then the fallback path
    chat(gw.url, GPU_KEY)  # fallback path
    stream_chat(gw.url, API_KEY)
    # an upstream error that echoes the key back must not leak it either
    claude_emulator.faults({"status": 400, "message": f"bad request for key {canary}"})
    r = chat(gw.url, API_KEY)
    assert r.status_code == 400
    assert canary not in r.text
    assert "[REDACTED]" in r.text
    assert claude_emulator.requests()[0]["api_key"] == canary  # it was used...
    metrics = gw.metrics()
    gw.stop()
    for where, text in (("log", gw.log_text()), ("metrics", metrics), ("config", gw.config_path.read_text())):
        assert canary not in text, f"key leaked into the {where}"
    assert "api-agent" in gw.log_text()  # ...and the log is not simply empty


def test_sigterm_drains_in_flight_streams_and_refuses_new_work(claude_emulator, gateway_factory):
    claude_emulator.configure(token_delay_s=0.05, output_tokens=30)  # a 1.5 s stream
    gw = gateway_factory(gateway_config(claude_emulator.base_url), env=env_for(claude_emulator))
    box = {}
    t = threading.Thread(target=lambda: box.update(r=stream_chat(gw.url, API_KEY)))
    t.start()
    time.sleep(0.3)
    gw.terminate()
    time.sleep(0.2)
    with pytest.raises(httpx.TransportError):
        chat(gw.url, API_KEY, timeout=2)
    t.join(10)
    r, text = box["r"]
    events = sse_events(text)
    assert events[-1][1] == "[DONE]"
    assert len(events) >= 30
    assert gw.wait(10) == 0
    assert '"unfinished":0' in gw.log_text()


def test_drain_stops_at_its_limit_and_readyz_turns_503_meanwhile(claude_emulator, gateway_factory):
    """A stream longer than drain_timeout_s does not hold the process: it exits at the limit
    (not twice it), the cut stream never ends as a complete answer, and a load balancer still
    connected sees /readyz 503 during the drain."""
    claude_emulator.configure(token_delay_s=0.1, output_tokens=100)  # a 10 s stream
    gw = gateway_factory(gateway_config(claude_emulator.base_url, drain_timeout_s=2.0), env=env_for(claude_emulator))
    lb = httpx.Client(timeout=5)  # a kept-alive connection, as a load balancer's health checker has
    assert lb.get(gw.url + "/readyz").status_code == 200
    box = {}

    def reader() -> None:
        try:
            box["r"] = stream_chat(gw.url, API_KEY, timeout=30)
        except httpx.TransportError as exc:
            box["error"] = exc

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    gw.terminate()
    time.sleep(0.3)
    assert lb.get(gw.url + "/readyz").status_code == 503
    assert gw.wait(15) is not None
    took = time.monotonic() - t0
    t.join(10)
    assert 1.5 < took < 3.5, took  # the 2 s limit, with process start/stop slack; 4 s would be double
    # Cut at the limit: the client sees an incomplete chunked body, never a clean end.
    assert isinstance(box.get("error"), httpx.RemoteProtocolError), box
    assert '"unfinished":1' in gw.log_text()
    lb.close()


def test_config_rendered_from_the_example_plan_serves_with_its_cache_decision(claude_emulator, gateway_factory):
    """Plan -> build_gateway_config -> deploy serve: the intake agent caches as the plan decided."""
    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog
    from agentdeploy.serving.auth import hash_key
    from agentdeploy.serving.config import SecretRef
    from agentdeploy.templates.gateway_config import build_gateway_config

    catalog = load_catalog(include_home=False)
    plan = build_plan(load_decision_file("examples/service-business.yaml"), catalog)
    intake = plan.agent("intake")
    cfg = build_gateway_config(plan, catalog, anthropic_base_url=claude_emulator.base_url,
                               anthropic_key=SecretRef(env="TEST_ANTHROPIC_KEY"), client_key_hashes={"intake": [hash_key("intake-key-123456")]})
    gw = gateway_factory(cfg, env=env_for(claude_emulator))
    convo = {"model": "intake", "messages": [{"role": "system", "content": "abcd" * 6000}, {"role": "user", "content": "price?"},
                                             {"role": "assistant", "content": "which service?"}, {"role": "user", "content": "cleaning"}]}
    headers = {"authorization": "Bearer intake-key-123456"}
    first = httpx.post(gw.url + "/v1/chat/completions", json=convo, headers=headers, timeout=20)
    assert first.status_code == 200
    assert first.json()["model"] == intake.model
    sent = claude_emulator.requests()[-1]["body"]
    marker = {"type": "ephemeral"} if intake.cache.ttl == "5m" else {"type": "ephemeral", "ttl": "1h"}
    assert sent["system"][-1]["cache_control"] == marker
    assert sent["max_tokens"] == intake.max_tokens
    second = httpx.post(gw.url + "/v1/chat/completions", json=convo, headers=headers, timeout=20).json()
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= 6000
