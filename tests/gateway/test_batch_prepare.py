"""serving/batch: splitting within the Message Batches limits, and preparing a batch as planned."""

from __future__ import annotations

import orjson
import pytest

from agentdeploy.serving.batch.limits import MAX_BYTES, MAX_REQUESTS, TooLarge, split
from agentdeploy.serving.batch.prepare import BatchInputError, batch_prices, prepare
from agentdeploy.serving.config import parse_config
from agentdeploy.serving.runtime import Runtime
from agentdeploy.tokens import TokenPrices
from tests.gateway.helpers import gateway_config


def _reqs(n: int, size: int = 10) -> list[dict]:
    return [{"custom_id": f"r{i}", "params": {"messages": [{"role": "user", "content": "x" * size}]}} for i in range(n)]


def test_limits_are_the_apis():
    assert MAX_REQUESTS == 100_000
    assert MAX_BYTES == 256 * 1024 * 1024


def test_split_by_count_and_by_bytes_keeps_order():
    reqs = _reqs(7)
    parts = split(reqs, max_requests=3)
    assert [len(p) for p in parts] == [3, 3, 1]
    assert [r for p in parts for r in p] == reqs
    one = len(orjson.dumps(reqs[0])) + 1
    parts = split(reqs, max_bytes=len(b'{"requests":[]}') + 2 * one)
    assert [len(p) for p in parts] == [2, 2, 2, 1]
    for p in parts:
        assert len(orjson.dumps({"requests": p})) <= len(b'{"requests":[]}') + 2 * one
    with pytest.raises(TooLarge, match="requests.0"):
        split(_reqs(1, 100), max_bytes=50)


def test_batch_prices_take_the_discount_off_every_kind():
    p = batch_prices(TokenPrices(input=3e-6, output=15e-6, cache_write_5m=3.75e-6, cache_write_1h=6e-6, cache_read=3e-7), 0.5)
    assert (p.input, p.output, p.cache_write_5m, p.cache_write_1h, p.cache_read) == (1.5e-6, 7.5e-6, 1.875e-6, 3e-6, 1.5e-7)


def _agent(**spec):
    cfg = gateway_config("http://127.0.0.1:9", api_agent={"batch": {"discount": 0.5}, "max_tokens_cap": 100,
                                                          "cache": {"enabled": True, "ttl": "1h", "breakpoints": ["system"]}, **spec})
    return Runtime(parse_config(cfg), {}).agents["api-agent"]


def test_prepare_pins_caps_caches_and_groups_shared_prefixes():
    big, other = "a" * 20000, "b" * 20000
    reqs = [{"custom_id": f"r{i}", "params": {"model": "x", "max_tokens": 999 if i == 0 else 10, "system": big if i % 2 == 0 else other,
                                              "messages": [{"role": "user", "content": f"q{i}"}]}} for i in range(4)]
    prepared = prepare(_agent(), reqs)
    assert [r["custom_id"] for r in prepared.requests] == ["r0", "r2", "r1", "r3"]  # shared prefixes adjacent
    first = prepared.requests[0]["params"]
    assert first["model"] == "claude-sonnet-4-6"
    assert first["max_tokens"] == 100
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert prepared.worst_micro > 0


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda r: r[1].update(custom_id="bad id"), "requests.1.custom_id"),
    (lambda r: r[1].update(params="nope"), "requests.1.params"),
    (lambda r: r[0]["params"].update(max_tokens=0), "requests.0.params.max_tokens"),
    (lambda r: r[0]["params"].update(stream=True), "requests.0.params.stream"),
])
def test_prepare_names_the_bad_request(mutate, where):
    reqs = _reqs(2)
    mutate(reqs)
    with pytest.raises(BatchInputError, match=where.replace(".", r"\.")):
        prepare(_agent(), reqs)


def test_over_cap_reject_is_the_agents_choice():
    reqs = _reqs(1)
    reqs[0]["params"]["max_tokens"] = 101
    with pytest.raises(BatchInputError, match="cap of 100"):
        prepare(_agent(over_cap="reject"), reqs)


def test_parts_merge_into_one_batch_view():
    from agentdeploy.serving.batch.room import BatchRecord, merge_view

    rec = BatchRecord("msgbatch_agd1", "a", "m", "anthropic", ["p1", "p2"], 5, None, 0)

    def part(status: str, ended: str | None, **counts: int) -> dict:
        base = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        return {"processing_status": status, "request_counts": {**base, **counts}, "ended_at": ended,
                "created_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-02T00:00:00Z", "cancel_initiated_at": None}

    view = merge_view(rec, [part("ended", "2026-12-01T01:00:00Z", succeeded=3), part("in_progress", None, processing=2)], "U")
    assert view["id"] == "msgbatch_agd1"
    assert view["processing_status"] == "in_progress"
    assert view["results_url"] is None
    assert view["request_counts"]["succeeded"] == 3
    assert view["request_counts"]["processing"] == 2
    assert view["ended_at"] is None
    view = merge_view(rec, [part("ended", "2026-12-01T01:00:00Z", succeeded=3), part("ended", "2026-12-01T02:00:00Z", expired=2)], "U")
    assert view["processing_status"] == "ended"
    assert view["ended_at"] == "2026-12-01T02:00:00Z"
    assert view["results_url"] == "U"
