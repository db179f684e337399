"""The Claude emulator's Message Batches: the real API's lifecycle, result types, batch pricing
and cache usage, and the Admin API cost report at half price (driven by the batch clock)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx

from tests.support.emulators.anthropic_admin import AdminEmulator

BIG = "brand guide: " + "write warmly and plainly. " * 900  # ~5,600 tokens: above Haiku's 4,096 minimum


def _h(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def _req(i: int, system: str = BIG) -> dict:
    return {"custom_id": f"draft-{i}", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 50,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": f"draft number {i}"}]}}


async def _cost_report(rows: list[dict]) -> dict:
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(AdminEmulator("admin-key").app)) as client:
        await client.post("/_emulator/usage", json=rows)
        day = rows[0]["at"][:10] + "T00:00:00Z"
        resp = await client.get("/v1/organizations/cost_report", params={"starting_at": day, "group_by[]": "description"},
                                headers={"x-api-key": "admin-key", "anthropic-version": "2023-06-01"})
        return await resp.json()


def _ctl(emu, path: str, body: dict | None = None) -> dict:
    return emu._call("POST", path, body or {})


def test_batch_lifecycle_results_and_cache(claude_emulator):
    emu = claude_emulator
    emu._call("DELETE", "/_emulator/batches")
    reqs = [_req(i) for i in range(3)] + [{"custom_id": "bad", "params": {"model": "claude-haiku-4-5", "messages": []}}]
    r = httpx.post(emu.base_url + "/v1/messages/batches", json={"requests": reqs}, headers=_h(emu.api_key))
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["type"] == "message_batch"
    assert b["processing_status"] == "in_progress"
    assert b["results_url"] is None
    assert b["request_counts"] == {"processing": 4, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    early = httpx.get(emu.base_url + f"/v1/messages/batches/{b['id']}/results", headers=_h(emu.api_key))
    assert early.status_code == 400
    _ctl(emu, "/_emulator/batches/process", {"id": b["id"], "requests": 2})
    mid = httpx.get(emu.base_url + f"/v1/messages/batches/{b['id']}", headers=_h(emu.api_key)).json()
    assert mid["processing_status"] == "in_progress"
    assert mid["request_counts"]["succeeded"] == 2
    _ctl(emu, "/_emulator/batches/process", {"id": b["id"]})
    done = httpx.get(emu.base_url + f"/v1/messages/batches/{b['id']}", headers=_h(emu.api_key)).json()
    assert done["processing_status"] == "ended"
    assert done["ended_at"]
    assert done["results_url"].endswith("/results")
    assert done["request_counts"] == {"processing": 0, "succeeded": 3, "errored": 1, "canceled": 0, "expired": 0}
    lines = [json.loads(x) for x in httpx.get(done["results_url"], headers=_h(emu.api_key)).text.splitlines()]
    by = {x["custom_id"]: x["result"] for x in lines}
    assert by["bad"]["type"] == "errored"
    assert by["bad"]["error"]["error"]["type"] == "invalid_request_error"
    usages = [by[f"draft-{i}"]["message"]["usage"] for i in range(3)]
    assert all(u["service_tier"] == "batch" for u in usages)
    assert usages[0]["cache_creation"]["ephemeral_1h_input_tokens"] > 4096
    assert usages[0]["cache_read_input_tokens"] == 0
    assert usages[1]["cache_read_input_tokens"] == usages[0]["cache_creation_input_tokens"]
    assert usages[2]["cache_creation_input_tokens"] == 0
    # another key sees none of it
    other = httpx.get(emu.base_url + f"/v1/messages/batches/{b['id']}", headers=_h("someone-else"))
    assert other.status_code == 401


def test_cancel_and_expiry(claude_emulator):
    emu = claude_emulator
    emu._call("DELETE", "/_emulator/batches")
    a = httpx.post(emu.base_url + "/v1/messages/batches", json={"requests": [_req(i, "short") for i in range(3)]}, headers=_h(emu.api_key)).json()
    _ctl(emu, "/_emulator/batches/process", {"id": a["id"], "requests": 1})
    c = httpx.post(emu.base_url + f"/v1/messages/batches/{a['id']}/cancel", headers=_h(emu.api_key)).json()
    assert c["processing_status"] == "canceling"
    assert c["cancel_initiated_at"]
    _ctl(emu, "/_emulator/batches/process", {"id": a["id"]})
    end = httpx.get(emu.base_url + f"/v1/messages/batches/{a['id']}", headers=_h(emu.api_key)).json()
    assert end["processing_status"] == "ended"
    assert end["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 2, "expired": 0}
    e = httpx.post(emu.base_url + "/v1/messages/batches", json={"requests": [_req(i, "short") for i in range(2)]}, headers=_h(emu.api_key)).json()
    _ctl(emu, "/_emulator/batches/advance", {"seconds": 23 * 3600})
    assert httpx.get(emu.base_url + f"/v1/messages/batches/{e['id']}", headers=_h(emu.api_key)).json()["processing_status"] == "in_progress"
    _ctl(emu, "/_emulator/batches/advance", {"seconds": 3600})
    ex = httpx.get(emu.base_url + f"/v1/messages/batches/{e['id']}", headers=_h(emu.api_key)).json()
    assert ex["processing_status"] == "ended"
    assert ex["request_counts"]["expired"] == 2
    results = [json.loads(x)["result"]["type"] for x in httpx.get(ex["results_url"], headers=_h(emu.api_key)).text.splitlines()]
    assert results == ["expired", "expired"]
    listed = httpx.get(emu.base_url + "/v1/messages/batches?limit=1", headers=_h(emu.api_key)).json()
    assert listed["data"][0]["id"] == e["id"]
    assert listed["has_more"] is True


def test_limits_are_the_apis(claude_emulator):
    emu = claude_emulator
    dup = [_req(1, "x"), _req(1, "x")]
    r = httpx.post(emu.base_url + "/v1/messages/batches", json={"requests": dup}, headers=_h(emu.api_key))
    assert r.status_code == 400
    assert "unique" in r.json()["error"]["message"]
    bad_id = [{"custom_id": "has space", "params": {}}]
    r = httpx.post(emu.base_url + "/v1/messages/batches", json={"requests": bad_id}, headers=_h(emu.api_key))
    assert r.status_code == 400
    assert "custom_id" in r.json()["error"]["message"]


def test_admin_cost_report_shows_batch_spend_at_half_price(claude_emulator):
    """Usage billed by batches, loaded into the Admin API emulator: the cost report prices it at
    half the list price (Haiku: $1 in, $5 out per Mtok, cache multipliers on top)."""
    emu = claude_emulator
    emu._call("DELETE", "/_emulator/batches")
    b = httpx.post(emu.base_url + "/v1/messages/batches", json={"requests": [_req(i) for i in range(2)]}, headers=_h(emu.api_key)).json()
    _ctl(emu, "/_emulator/batches/process", {"id": b["id"]})
    rows = emu._call("GET", "/_emulator/batches/usage")
    assert len(rows) == 2
    assert all(r["service_tier"] == "batch" for r in rows)
    report = asyncio.run(_cost_report(rows))
    cents = sum(Decimal(item["amount"]) for bucket in report["data"] for item in bucket["results"])
    full = sum(Decimal(r["uncached_input_tokens"]) * 1 + Decimal(r["cache_read_input_tokens"]) * Decimal("0.1")
               + Decimal(r["cache_creation_1h"]) * 2 + Decimal(r["cache_creation_5m"]) * Decimal("1.25")
               + Decimal(r["output_tokens"]) * 5 for r in rows) / Decimal(1_000_000) * 100
    assert cents == full / 2
    assert cents > 0
