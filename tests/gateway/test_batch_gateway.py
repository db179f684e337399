"""Message Batches through the gateway for a batch agent (the example's marketing drafts), against
the Claude emulator, driven by its batch clock: the plan's model pinned, max_tokens capped, the
shared prefix cached with the plan's TTL, the worst case reserved at batch prices, the budget and
metrics settled to the batch-priced usage, and realtime requests refused."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import httpx

from agentdeploy.serving.auth import hash_key
from tests.gateway.helpers import HAIKU, env_for, gateway_config, messages, metric_value

MARKETING_KEY = "client-key-marketing-drafts-0123456789"
BRAND = "brand guide: " + "write warmly, plainly, and never shout. " * 560  # ~5,600 tokens, above Haiku's 4,096
N = 120


def _config(claude, **agent):
    cfg = gateway_config(claude.base_url)
    cfg["agents"]["marketing-drafts"] = {
        "key_hashes": [hash_key(MARKETING_KEY)],
        "chain": [{"upstream": "anthropic", "model": "claude-haiku-4-5"}],
        "max_tokens_default": 200, "max_tokens_cap": 256,
        "cache": {"enabled": True, "ttl": "1h", "breakpoints": ["system"]},
        "budget": {"monthly_usd": 50, "policy": "block"},
        "batch": {"discount": 0.5},
        **agent,
    }
    return cfg


def _h(key: str = MARKETING_KEY) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def _requests(n: int = N) -> list[dict]:
    return [{"custom_id": f"draft-{i:04d}", "params": {"model": "whatever-the-client-says", "max_tokens": 5000,
             "system": BRAND, "messages": [{"role": "user", "content": f"a launch email for product {i}"}]}}
            for i in range(n)]


def _batch_priced_micro(rows: list[dict]) -> int:
    """What the emulator billed, priced independently of the gateway: Haiku list prices, cache
    multipliers, half off (Decimal, rounded up to micro-USD once)."""
    per_tok = {"uncached_input_tokens": HAIKU["input"], "output_tokens": HAIKU["output"], "cache_creation_5m": HAIKU["cache_write_5m"],
               "cache_creation_1h": HAIKU["cache_write_1h"], "cache_read_input_tokens": HAIKU["cache_read"]}
    total = sum((Decimal(str(per_tok[k])) / 2 * r[k] for r in rows for k in per_tok), Decimal(0))
    return math.ceil(total * 1_000_000)


def _drive(claude, path: str, body: dict | None = None) -> dict:
    return claude._call("POST", path, body or {})


def test_batch_through_gateway_settles_at_batch_prices(claude_emulator, gateway_factory):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    claude.configure(output_tokens=300)
    gw = gateway_factory(_config(claude), env=env_for(claude))

    r = httpx.post(gw.url + "/v1/messages/batches", json={"requests": _requests()}, headers=_h(), timeout=30)
    assert r.status_code == 200, r.text
    batch = r.json()
    assert batch["processing_status"] == "in_progress"
    assert batch["request_counts"]["processing"] == N
    reserved = Decimal(r.headers["x-agentdeploy-reserved-usd"])
    assert reserved > 0

    _drive(claude, "/_emulator/batches/process", {"requests": 40})
    mid = httpx.get(gw.url + f"/v1/messages/batches/{batch['id']}", headers=_h(), timeout=30).json()
    assert mid["processing_status"] == "in_progress"
    assert mid["request_counts"]["succeeded"] == 40
    assert mid["results_url"] is None
    assert metric_value(gw.metrics(), "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == 0  # nothing settled yet

    _drive(claude, "/_emulator/batches/process")
    done = httpx.get(gw.url + f"/v1/messages/batches/{batch['id']}", headers=_h(), timeout=30).json()
    assert done["processing_status"] == "ended"
    assert done["request_counts"]["succeeded"] == N
    assert done["results_url"] == f"{gw.url}/v1/messages/batches/{batch['id']}/results"

    res = httpx.get(done["results_url"], headers=_h(), timeout=30)
    assert res.status_code == 200
    lines = [json.loads(x) for x in res.text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == [f"draft-{i:04d}" for i in range(N)]
    msgs = [x["result"]["message"] for x in lines]
    assert all(m["model"] == "claude-haiku-4-5" for m in msgs)  # pinned to the plan's model
    assert all(m["usage"]["output_tokens"] == 256 and m["stop_reason"] == "max_tokens" for m in msgs)  # capped
    usages = [m["usage"] for m in msgs]
    writes = [u for u in usages if u["cache_creation_input_tokens"]]
    assert len(writes) == 1 and writes[0]["cache_creation"]["ephemeral_1h_input_tokens"] > 4096  # plan's TTL, on the prefix
    assert sum(1 for u in usages if u["cache_read_input_tokens"] == writes[0]["cache_creation_input_tokens"]) == N - 1

    rows = claude._call("GET", "/_emulator/batches/usage")
    expected = _batch_priced_micro(rows)
    page = gw.metrics()
    assert metric_value(page, "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == expected / 1e6
    assert metric_value(page, "agentdeploy_gateway_budget_remaining_usd", agent="marketing-drafts") == 50 - expected / 1e6
    assert metric_value(page, "agentdeploy_gateway_tokens_total", agent="marketing-drafts", type="cache_read") == sum(
        r["cache_read_input_tokens"] for r in rows)
    assert metric_value(page, "agentdeploy_gateway_tokens_total", agent="marketing-drafts", type="output") == 256 * N
    assert expected < reserved * 1_000_000  # the worst case covered it
    settled = [json.loads(x) for x in gw.log_text().splitlines() if '"batch_settled"' in x]
    assert len(settled) == 1
    assert settled[0]["cost_usd"] == expected / 1e6
    assert settled[0]["results"] == {"succeeded": N}

    # a second read settles nothing twice
    httpx.get(done["results_url"], headers=_h(), timeout=30)
    assert metric_value(gw.metrics(), "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == expected / 1e6
    listed = httpx.get(gw.url + "/v1/messages/batches", headers=_h(), timeout=30).json()
    assert [b["id"] for b in listed["data"]] == [batch["id"]]


def test_realtime_request_for_batch_agent_is_refused(claude_emulator, gateway_factory):
    claude = claude_emulator
    gw = gateway_factory(_config(claude), env=env_for(claude))
    r = messages(gw.url, MARKETING_KEY, "draft now please")
    assert r.status_code == 400
    assert r.headers["x-agentdeploy-error"] == "batch_only"
    assert "/v1/messages/batches" in r.json()["error"]["message"]
    assert "deploy batch submit" in r.json()["error"]["message"]
    chat = httpx.post(gw.url + "/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "now"}]},
                      headers={"authorization": f"Bearer {MARKETING_KEY}"}, timeout=20)
    assert chat.status_code == 400
    assert "/v1/batches" in chat.json()["error"]["message"]
    assert claude.requests() == []  # nothing went upstream at full price


def test_budget_that_cannot_hold_the_worst_case_submits_nothing(claude_emulator, gateway_factory):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    gw = gateway_factory(_config(claude, budget={"monthly_usd": 0.01, "policy": "block"}), env=env_for(claude))
    r = httpx.post(gw.url + "/v1/messages/batches", json={"requests": _requests(20)}, headers=_h(), timeout=30)
    assert r.status_code == 429
    assert r.headers["x-agentdeploy-error"] == "budget_exceeded"
    assert "batch prices" in r.json()["error"]["message"]
    upstream = httpx.get(claude.base_url + "/v1/messages/batches", headers=_h(claude.api_key)).json()
    assert upstream["data"] == []


def test_bad_batches_are_refused_naming_the_request(claude_emulator, gateway_factory):
    claude = claude_emulator
    gw = gateway_factory(_config(claude), env=env_for(claude))
    reqs = _requests(3)
    reqs[2]["custom_id"] = reqs[0]["custom_id"]
    r = httpx.post(gw.url + "/v1/messages/batches", json={"requests": reqs}, headers=_h(), timeout=30)
    assert r.status_code == 400
    assert "requests.2.custom_id" in r.json()["error"]["message"]
    reqs = _requests(2)
    reqs[1]["params"]["stream"] = True
    r = httpx.post(gw.url + "/v1/messages/batches", json={"requests": reqs}, headers=_h(), timeout=30)
    assert r.status_code == 400
    assert "requests.1.params.stream" in r.json()["error"]["message"]
    # a realtime agent's key may not use the batch room, and nobody without a key may
    from tests.gateway.helpers import API_KEY

    r = httpx.post(gw.url + "/v1/messages/batches", json={"requests": _requests(1)}, headers=_h(API_KEY), timeout=30)
    assert r.status_code == 400
    assert "not a batch agent" in r.json()["error"]["message"]
    assert httpx.get(gw.url + "/v1/messages/batches/msgbatch_x", headers=_h("nope"), timeout=30).status_code == 401
    assert httpx.get(gw.url + "/v1/messages/batches/msgbatch_x", headers=_h(), timeout=30).status_code == 404


def test_cancel_through_gateway_bills_only_what_ran(claude_emulator, gateway_factory):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    gw = gateway_factory(_config(claude), env=env_for(claude))
    b = httpx.post(gw.url + "/v1/messages/batches", json={"requests": _requests(10)}, headers=_h(), timeout=30).json()
    _drive(claude, "/_emulator/batches/process", {"requests": 3})
    c = httpx.post(gw.url + f"/v1/messages/batches/{b['id']}/cancel", headers=_h(), timeout=30).json()
    assert c["processing_status"] == "canceling"
    _drive(claude, "/_emulator/batches/process")
    end = httpx.get(gw.url + f"/v1/messages/batches/{b['id']}", headers=_h(), timeout=30).json()
    assert end["request_counts"] == {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 7, "expired": 0}
    rows = claude._call("GET", "/_emulator/batches/usage")
    assert len(rows) == 3
    page = gw.metrics()
    assert metric_value(page, "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == _batch_priced_micro(rows) / 1e6


def test_expired_requests_bill_nothing_and_release_their_reservation(claude_emulator, gateway_factory):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    gw = gateway_factory(_config(claude), env=env_for(claude))
    b = httpx.post(gw.url + "/v1/messages/batches", json={"requests": _requests(5)}, headers=_h(), timeout=30).json()
    _drive(claude, "/_emulator/batches/process", {"requests": 2})
    _drive(claude, "/_emulator/batches/advance", {"seconds": 24 * 3600})  # the API's 24 h, compressed
    end = httpx.get(gw.url + f"/v1/messages/batches/{b['id']}", headers=_h(), timeout=30).json()
    assert end["processing_status"] == "ended"
    assert end["request_counts"]["expired"] == 3
    assert end["request_counts"]["succeeded"] == 2
    expected = _batch_priced_micro(claude._call("GET", "/_emulator/batches/usage"))
    page = gw.metrics()
    assert metric_value(page, "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == expected / 1e6
    assert metric_value(page, "agentdeploy_gateway_budget_remaining_usd", agent="marketing-drafts") == 50 - expected / 1e6


def test_gateway_settles_an_ended_batch_nobody_asks_about(claude_emulator, gateway_factory):
    """The gateway follows its batches itself (batch.follow_s): the budget settles at the end
    even when the client never reads the batch again."""
    import time

    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    gw = gateway_factory(_config(claude, batch={"discount": 0.5, "follow_s": 0.05}), env=env_for(claude))
    r = httpx.post(gw.url + "/v1/messages/batches", json={"requests": _requests(6)}, headers=_h(), timeout=30)
    assert r.status_code == 200
    _drive(claude, "/_emulator/batches/process")
    expected = _batch_priced_micro(claude._call("GET", "/_emulator/batches/usage"))
    deadline = time.monotonic() + 20
    while '"batch_settled"' not in gw.log_text():  # wait for the proof, bounded
        assert time.monotonic() < deadline, "the gateway never settled the ended batch"
        time.sleep(0.05)
    assert metric_value(gw.metrics(), "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == expected / 1e6
