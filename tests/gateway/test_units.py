"""Pure pieces of the gateway: breaker, pricing, budget store, cache breakpoints, routing rules, config."""

import asyncio
import random
import json

import pytest

from agentdeploy.errors import InvalidInput, MissingDependency
from agentdeploy.serving import fallback as fb
from agentdeploy.serving.auth import SHARED, KeyIndex, presented_key
from agentdeploy.serving.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from agentdeploy.serving.budget import MemoryBudgetStore, to_micro
from agentdeploy.serving.cache_control import place_breakpoints
from agentdeploy.serving.config import (
    BreakerSpec,
    UpstreamSpec,
    build_gateway_config,
    check_secrets,
    client_key_hashes_from_env,
    dump_yaml,
    hash_key,
    load_config,
    parse_config,
)
from agentdeploy.serving.pricing import Prices, Usage, cost_usd, worst_case_usd
from agentdeploy.serving.redact import Redactor
from agentdeploy.serving.upstreams import NO_HEALTHY, OVERLOAD, Target, Upstream, VllmLoad, node_health_url, parse_vllm_metrics
from tests.gateway.helpers import API_KEY, GPU_KEY, SHARED_KEY, gateway_config


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_breaker_opens_probes_and_backs_off_when_flapping():
    clock = Clock()
    b = Breaker(failure_threshold=2, open_s=1.0, max_open_s=4.0, clock=clock)
    b.failure()
    assert b.state == CLOSED and b.acquire()
    b.failure()
    assert b.state == OPEN and not b.acquire()
    clock.t = 1.0
    assert b.acquire() and b.state == HALF_OPEN
    assert not b.acquire()  # one trial at a time
    b.failure()  # trial failed: open again, twice as long
    assert b.state == OPEN and b.open_for == 2.0
    clock.t = 2.5
    assert not b.available()
    clock.t = 3.0
    assert b.acquire()
    b.success()
    assert b.state == CLOSED and b.acquire()


def test_breaker_opens_on_a_replica_failing_every_other_request():
    """Never two failures in a row, so the consecutive rule alone would keep it closed forever."""
    clock = Clock()
    b = Breaker(failure_threshold=2, open_s=1.0, max_open_s=8.0, failure_rate=0.5, window=6, clock=clock)
    for i in range(5):
        assert b.acquire()
        b.success() if i % 2 == 0 else b.failure()
        assert b.state == CLOSED, i
    assert b.acquire()
    b.failure()  # 3 failures out of the last 6
    assert b.state == OPEN and b.open_for == 1.0
    clock.t = 1.0
    assert b.acquire()
    b.success()  # the trial passed: closed, with a clean window
    assert b.state == CLOSED
    for i in range(6):  # it flaps again right away: open again, for twice as long
        b.acquire()
        b.failure() if i % 2 else b.success()
    assert b.state == OPEN and b.open_for == 2.0
    clock.t = 3.0
    assert b.acquire()
    b.success()
    clock.t = 20.0  # healthy for longer than max_open_s: the next opening starts at the base again
    b.failure()
    b.failure()
    assert b.state == OPEN and b.open_for == 1.0


def test_breaker_rate_rule_ignores_a_healthy_replica_with_rare_failures():
    b = Breaker(failure_threshold=3, failure_rate=0.5, window=10, clock=Clock())
    for i in range(40):
        b.acquire()
        b.failure() if i % 5 == 0 else b.success()
    assert b.state == CLOSED


def test_breaker_probe_moves_open_to_half_open_only_after_the_wait():
    clock = Clock()
    b = Breaker(failure_threshold=3, open_s=1.0, clock=clock)
    b.trip()
    b.probe_ok()
    assert b.state == OPEN
    clock.t = 1.1
    b.probe_ok()
    assert b.state == HALF_OPEN


def test_cost_prices_cache_writes_by_ttl_and_reads():
    p = Prices(input=1e-6, output=5e-6, cache_write_5m=1.25e-6, cache_write_1h=2e-6, cache_read=1e-7)
    u = Usage(input_tokens=100, output_tokens=10, cache_write_5m=1000, cache_write_1h=2000, cache_read=5000)
    assert cost_usd(u, p) == pytest.approx(100e-6 + 50e-6 + 1250e-6 + 4000e-6 + 500e-6)
    assert worst_case_usd(100, 10, p) == pytest.approx(100 * 2e-6 + 10 * 5e-6)


def test_memory_budget_reserves_worst_case_and_settles_to_actual():
    async def run():
        store = MemoryBudgetStore()
        limit = to_micro(1.0)
        assert await store.reserve("k", to_micro(0.6), limit)
        assert not await store.reserve("k", to_micro(0.6), limit)  # would overshoot while the first is open
        await store.settle("k", to_micro(0.6), to_micro(0.1))
        assert await store.reserve("k", to_micro(0.6), limit)
        assert await store.spent("k") == to_micro(0.1)
        assert await store.committed("k") == to_micro(0.7)
        assert await store.reserve("k", to_micro(100), None)  # alert policy: never refused

    asyncio.run(run())


def _big(n_tokens: int) -> str:
    return "abcd" * n_tokens


def test_breakpoints_placed_on_planned_levels_above_minimum_with_ttl():
    body = {
        "tools": [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}],
        "system": _big(5000),
        "messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}],
    }
    out = place_breakpoints(body, ["tools", "system", "conversation"], "1h", 4096)
    assert "cache_control" not in out["tools"][-1]  # tools alone are below the minimum
    assert out["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert out["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert isinstance(body["system"], str)  # input untouched
    small = place_breakpoints({**body, "system": "short"}, ["system"], "5m", 4096)
    assert small["system"] == "short"


def test_breakpoints_never_exceed_four():
    marked = {"type": "ephemeral"}
    body = {
        "system": [{"type": "text", "text": _big(5000), "cache_control": marked}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": marked}, {"type": "text", "text": "y", "cache_control": marked}, {"type": "text", "text": "z", "cache_control": marked}]},
                     {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}],
    }
    out = place_breakpoints(body, ["system", "conversation"], "5m", 1024)
    assert out is body  # already four: nothing added


def test_classify_status_routes_each_kind():
    assert fb.classify_status(400, "openai", b'{"error":{"message":"This model\'s maximum context length is 512 tokens"}}').reason == fb.CONTEXT_LENGTH
    assert fb.classify_status(400, "anthropic", b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 300000 tokens > 200000 maximum"}}').reason == fb.CONTEXT_LENGTH
    cf = fb.classify_status(400, "openai", b'{"error":{"message":"flagged","type":"content_filter"}}')
    assert cf.reason == fb.CONTENT_FILTER and cf.reason in fb.TERMINAL
    assert fb.classify_status(429, "anthropic", b"{}").reason == fb.RATE_LIMITED
    assert fb.classify_status(529, "anthropic", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}').reason == fb.OVERLOADED
    assert fb.classify_status(503, "openai", b"down").reason in fb.HEALTH_FAILURES
    assert fb.classify_status(400, "openai", b'{"error":{"message":"bad temperature"}}').reason == fb.CLIENT_ERROR


def test_retry_waits_honour_retry_after_and_fit_the_budget():
    f = fb.Failed(fb.RATE_LIMITED, 429, retry_after=1.5)
    assert fb.retry_wait(f, 0) == 1.5
    rng = random.Random(1)
    waits = [fb.retry_wait(fb.Failed(fb.OVERLOADED), t, rng) for t in range(4)]
    assert all(0.125 <= w <= 2.0 for w in waits) and waits[3] > waits[0]
    assert fb.fits(1.5, 0, 2, 0.0, 10.0, deadline=10.0, now=5.0)
    assert not fb.fits(1.5, 0, 2, 0.0, 10.0, deadline=6.0, now=5.0)  # would not fit the latency budget
    assert not fb.fits(1.5, 2, 2, 0.0, 10.0, None, 0.0)  # retries used up
    assert not fb.fits(1.5, 0, 2, 9.0, 10.0, None, 0.0)  # total retry cap


def test_key_index_matches_hashes_only():
    cfg = parse_config(gateway_config("http://127.0.0.1:1"))
    idx = KeyIndex(cfg)
    assert idx.lookup(API_KEY) == "api-agent" and idx.lookup(GPU_KEY) == "gpu-agent"
    assert idx.lookup(SHARED_KEY) == SHARED and idx.lookup("nope") is None and idx.lookup(None) is None
    assert presented_key({"authorization": "Bearer abc"}) == "abc" and presented_key({"x-api-key": "k"}) == "k"
    assert API_KEY not in dump_yaml(cfg)


def test_parse_vllm_metrics_sums_each_series_over_its_labels():
    text = ('# HELP x\nvllm:num_requests_running{model_name="m"} 3.0\nvllm:num_requests_waiting{model_name="m"} 4.0\n'
            'vllm:num_requests_waiting_by_reason 9\nvllm:request_success_total{finished_reason="stop"} 10.0\n'
            'vllm:request_success_total{finished_reason="length"} 5.0\nvllm:request_success_created 1.7e9\n')
    assert parse_vllm_metrics(text) == VllmLoad(running=3.0, waiting=4.0, finished=15.0)
    assert parse_vllm_metrics("vllm:num_requests_running 1\n").finished is None  # no counter: rate unknown


def _target() -> Target:
    return Target("http://r1:8000", "/v1/chat/completions", Breaker(), {})


def test_predicted_wait_is_the_queue_over_the_measured_finish_rate():
    t = _target()
    t.observe(VllmLoad(running=4, waiting=9, finished=100), now=10.0)
    assert t.finish_rate == 0 and t.predicted_wait_s() == 0  # one reading: no rate yet
    t.observe(VllmLoad(running=4, waiting=9, finished=120), now=12.0)  # 10 finished per second
    assert t.finish_rate == pytest.approx(10.0) and t.predicted_wait_s() == pytest.approx(1.0)  # 9 ahead + itself
    t.observe(VllmLoad(running=4, waiting=9, finished=120), now=14.0)  # nothing finished: draining slower
    assert t.finish_rate == pytest.approx(5.0) and t.predicted_wait_s() == pytest.approx(2.0)
    t.observe(VllmLoad(running=2, waiting=0, finished=125), now=15.0)
    assert t.predicted_wait_s() == 0 and t.load == 2
    t.observe(VllmLoad(running=1, waiting=3, finished=3), now=16.0)  # restarted: counter went back, rate kept
    assert t.finish_rate == pytest.approx(5.0)
    t.observe(VllmLoad(running=0, waiting=0, finished=3), now=17.0)
    t.observe(VllmLoad(running=0, waiting=0, finished=3), now=600.0)  # idle ten minutes: no evidence
    t.observe(VllmLoad(running=1, waiting=2, finished=3), now=601.0)  # a burst arrives
    assert t.finish_rate == pytest.approx(5.0) and t.predicted_wait_s() == pytest.approx(0.6)


def test_pick_skips_a_replica_whose_queue_would_eat_the_first_token_budget():
    spec = UpstreamSpec(kind="openai", replicas=["http://r1:8000", "http://r2:8000"])
    up = Upstream("vllm", spec, BreakerSpec(), None)
    busy, idle = up.targets
    for t, waiting in ((busy, 30), (idle, 1)):
        t.observe(VllmLoad(running=1, waiting=waiting, finished=0), now=0.0)
        t.observe(VllmLoad(running=1, waiting=waiting, finished=10), now=1.0)  # 10/s each
    busy.in_flight = 0
    idle.in_flight = 5  # our own count makes `idle` look busier by load, yet its queue is short
    assert up.pick(wait_budget_s=1.0)[0] is idle  # busy: 31 / 10 = 3.1 s of queue > 1 s
    idle.breaker = Breaker()
    idle.observe(VllmLoad(running=1, waiting=50, finished=20), now=2.0)
    assert up.pick(wait_budget_s=1.0) == (None, OVERLOAD)
    assert up.pick(wait_budget_s=10.0)[0] is not None  # a patient entry still goes there
    assert up.pick(last_resort=True, wait_budget_s=1.0)[0] is not None  # nothing after it: try anyway


def test_redactor_masks_loaded_secrets():
    r = Redactor()
    r.add(["sk-canary-123456"])
    assert r.text("key sk-canary-123456 leaked") == "key [REDACTED] leaked"
    assert b"sk-canary" not in r.bytes(b"x sk-canary-123456")


def test_build_from_plan_examples_maps_routes_chains_and_prices():
    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog

    catalog = load_catalog(include_home=False)
    plan = build_plan(load_decision_file("examples/service-business.yaml"), catalog)
    cfg = build_gateway_config(plan, catalog, client_key_hashes={"intake": [hash_key("k1")]})
    intake = cfg.agents["intake"]
    assert [(e.upstream, e.model) for e in intake.chain] == [("anthropic", "claude-haiku-4-5")]
    assert intake.cache.breakpoints == ["system", "conversation"] and intake.cache.ttl == "5m"
    assert intake.deadline_s == 2.0 and intake.max_tokens_default == plan.agent("intake").max_tokens
    assert cfg.models["claude-haiku-4-5"].cache_write_1h == pytest.approx(2e-6)
    assert cfg.upstreams["anthropic"].api_key.env == "ANTHROPIC_API_KEY"
    assert cfg.agents["intake"].key_hashes == [hash_key("k1")]

    plan = build_plan(load_decision_file("examples/high-volume-router.yaml"), catalog)
    cfg = build_gateway_config(plan, catalog, vllm_replicas={"ticket-router": ["http://10.0.0.5:8000"]}, replicas_dir="/etc/agentdeploy")
    gpu = plan.agent("ticket-router")
    chain = cfg.agents["ticket-router"].chain
    assert chain[0].upstream == "vllm-ticket-router" and chain[0].model == gpu.fleet.served_model_name
    assert chain[1].model == gpu.fallback_model and chain[0].ttft_timeout_s < gpu.latency.ceiling_s
    up = cfg.upstreams["vllm-ticket-router"]
    assert up.replicas == ["http://10.0.0.5:8000"] and up.max_load_per_replica == gpu.fleet.max_concurrency_per_replica
    assert up.replicas_file == "/etc/agentdeploy/ticket-router.replicas"
    assert cfg.models[gpu.fleet.served_model_name].output == 0.0
    assert parse_config(__import__("yaml").safe_load(dump_yaml(cfg))) == cfg


def test_bad_config_names_the_field(tmp_path):
    bad = gateway_config("http://x")
    bad["agents"]["api-agent"]["chain"] = [{"upstream": "nowhere", "model": "m"}]
    with pytest.raises(InvalidInput) as err:
        parse_config(bad, "gw.yaml")
    assert "nowhere" in " ".join(err.value.details)
    p = tmp_path / "gw.yaml"
    p.write_text("agents: [unclosed")
    with pytest.raises(InvalidInput, match="gw.yaml:1"):
        load_config(p)


def test_missing_upstream_key_is_reported_by_name():
    cfg = parse_config(gateway_config("http://x"))
    with pytest.raises(MissingDependency) as err:
        check_secrets(cfg, environ={})
    assert "TEST_ANTHROPIC_KEY" in err.value.details[0]
    check_secrets(cfg, environ={"TEST_ANTHROPIC_KEY": "v"})


def test_client_keys_from_env_are_hashed():
    hashes = client_key_hashes_from_env(["intake", "sales-brief"], {"AGENTDEPLOY_KEY_SALES_BRIEF": "a, b"})
    assert hashes == {"intake": [], "sales-brief": [hash_key("a"), hash_key("b")]}


@pytest.mark.parametrize("message", [
    "The decoder prompt (length 600) is longer than the maximum model length of 512. Make sure that `max_model_len` is no smaller than the number of text tokens.",
    "Input length (600) exceeds model's maximum context length (512).",
    "This model's maximum context length is 512 tokens. However, your prompt contains 600 input tokens",
    "prompt is too long: 210000 tokens > 200000 maximum",
])
def test_every_context_length_phrasing_is_classified(message):
    raw = json.dumps({"error": {"message": message, "type": "BadRequestError", "code": 400}}).encode()
    assert fb.classify_status(400, "openai", raw).reason == fb.CONTEXT_LENGTH
    other = json.dumps({"error": {"message": "temperature must be between 0 and 2", "type": "BadRequestError"}}).encode()
    assert fb.classify_status(400, "openai", other).reason == fb.CLIENT_ERROR


def test_node_health_url_is_the_replicas_own_host_on_the_agent_port():
    assert node_health_url("http://10.0.3.7:8000", 8081) == "http://10.0.3.7:8081/healthz"
    assert node_health_url("http://[fd00::7]:8000/", 8081) == "http://[fd00::7]:8081/healthz"
    assert node_health_url("https://gpu-1.internal", 9000) == "https://gpu-1.internal:9000/healthz"


class _OneRead:
    """An upstream body that arrives in the given network reads (then EOF)."""

    def __init__(self, *reads: bytes) -> None:
        self.reads = list(reads)

    async def readany(self) -> bytes:
        return self.reads.pop(0) if self.reads else b""

    def set_exception(self, exc: BaseException) -> None:  # the stall watchdog's hook
        raise AssertionError(f"unexpected stall: {exc}")


@pytest.mark.parametrize("bad, reason", [
    (b'data: {"id": "x", "choices": [{"delta": {"content": "unterminated\n\n', fb.MALFORMED),
    (b'data: {"error": {"message": "engine died", "type": "server_error"}}\n\n', fb.STREAM_ERROR),
])
def test_pump_forwards_the_valid_chunks_read_together_with_a_broken_one(bad, reason):
    """Pass-through forwards raw payloads: the chunk before a broken one in the same network
    read must still reach the client before the error, not vanish with it."""
    from agentdeploy.serving.upstreams import SSEReader

    good = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok2 "},"finish_reason":null}]}\n\n'
    opened = fb.Opened(None, SSEReader(_OneRead(good + bad)), fb.parser_for("openai"), [], [])
    sent_raw: list = []
    sent_text: list = []

    async def sink(events: list, raw: list) -> None:
        sent_raw.extend(raw)
        sent_text.extend(ev[2] for ev in events if ev[0] == "text")

    result = asyncio.run(fb.pump(opened, 5.0, sink))
    assert result.reason == reason
    assert sent_text == ["tok2 "] and len(sent_raw) == 1 and b"tok2" in sent_raw[0]


def test_retry_after_reads_seconds_and_http_dates():
    now = 1_800_000_000.0
    assert fb._retry_after({"retry-after": "3"}, now) == 3.0
    from email.utils import formatdate

    assert fb._retry_after({"retry-after": formatdate(now + 7, usegmt=True)}, now) == pytest.approx(7.0)
    assert fb._retry_after({"retry-after": formatdate(now - 60, usegmt=True)}, now) == 0.0  # already past
    assert fb._retry_after({"retry-after": "soon"}, now) is None and fb._retry_after({}, now) is None


def test_a_rate_measured_across_an_outage_is_not_kept():
    """Frozen for 6 s, one request finished: that is no measure of how fast it drains a queue."""
    t = _target()
    t.observe(VllmLoad(running=2, waiting=1, finished=0), now=0.0, max_gap_s=1.6)
    t.observe(VllmLoad(running=2, waiting=1, finished=4), now=0.2, max_gap_s=1.6)  # 20/s
    t.observe(VllmLoad(running=2, waiting=1, finished=5), now=6.2, max_gap_s=1.6)  # the polls could not see in
    assert t.finish_rate == pytest.approx(20.0) and t.predicted_wait_s() == pytest.approx(0.1)


def test_a_draining_node_gets_nothing_even_when_its_breaker_would_allow_a_trial():
    spec = UpstreamSpec(kind="openai", replicas=["http://r1:8000", "http://r2:8000"], node_health_port=8081)
    up = Upstream("vllm", spec, BreakerSpec(), None)
    draining, other = up.targets
    draining.node_ok = False
    draining.in_flight, other.in_flight = 0, 3  # the draining one looks idlest
    assert up.pick()[0] is other
    other.node_ok = False
    assert up.pick() == (None, NO_HEALTHY)
    other.node_ok = True
    other.breaker.trip()
    assert up.pick(last_resort=True)[0] is other  # nothing after it: a non-draining node first
