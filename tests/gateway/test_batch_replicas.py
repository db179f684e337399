"""Batches across gateway replicas and restarts: the provisioned gateway runs two replicas behind
a load balancer, sharing a real redis-server. A batch made on one replica is read, settled and
listed on the other; a restarted replica still serves it and follows what is unsettled; the
budget moves from reserved to the batch-priced usage exactly once, whoever reads first."""

from __future__ import annotations

import concurrent.futures as cf
import json
import time

import httpx
import redis

from tests.gateway.helpers import API_KEY, env_for, metric_value
from tests.gateway.test_batch_gateway import _batch_priced_micro, _config, _h, _requests
from tests.gateway.test_batch_openai import AUTH, _lines

PREFIX = "batchrep"


def _shared(claude, redis_url: str, **agent):
    cfg = _config(claude, **agent)
    cfg["budget_store"] = {"backend": "redis", "redis_url": {"env": "TEST_REDIS_URL"}, "key_prefix": PREFIX}
    return cfg, {**env_for(claude), "TEST_REDIS_URL": redis_url}


def _budget_keys(r: redis.Redis) -> tuple[int, int]:
    """(committed, spent) micro-USD of the marketing agent's window, straight from Redis."""
    key = next(k for k in r.keys(f"{PREFIX}:*:marketing-drafts:*") if not k.endswith(b":spent"))
    return int(r.get(key) or 0), int(r.get(key + b":spent") or 0)


def _settled_lines(*gws) -> list[dict]:
    return [json.loads(x) for gw in gws for x in gw.log_text().splitlines() if '"batch_settled"' in x]


def test_batch_made_on_one_replica_settles_once_across_replicas_and_restarts(claude_emulator, gateway_factory, fresh_redis_url):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    cfg, env = _shared(claude, fresh_redis_url)
    a, b = gateway_factory(cfg, env=env), gateway_factory(cfg, env=env)
    r = redis.Redis.from_url(fresh_redis_url)

    made = httpx.post(a.url + "/v1/messages/batches", json={"requests": _requests(12)}, headers=_h(), timeout=30)
    assert made.status_code == 200, made.text
    batch_id = made.json()["id"]
    reserved = round(float(made.headers["x-agentdeploy-reserved-usd"]) * 1_000_000)
    assert _budget_keys(r) == (reserved, 0)  # the worst case is held in the shared window

    on_b = httpx.get(b.url + f"/v1/messages/batches/{batch_id}", headers=_h(), timeout=30)
    assert on_b.status_code == 200 and on_b.json()["request_counts"]["processing"] == 12  # not 404 on the other replica
    assert [x["id"] for x in httpx.get(b.url + "/v1/messages/batches", headers=_h(), timeout=30).json()["data"]] == [batch_id]

    a.stop()  # a restart: the batch, its reservation and its parts survive in Redis
    a = gateway_factory(cfg, env=env)
    claude._call("POST", "/_emulator/batches/process", {})
    expected = _batch_priced_micro(claude._call("GET", "/_emulator/batches/usage"))

    def results(gw) -> list[str]:
        res = httpx.get(gw.url + f"/v1/messages/batches/{batch_id}/results", headers=_h(), timeout=30)
        assert res.status_code == 200, res.text
        return sorted(json.loads(x)["custom_id"] for x in res.text.splitlines())

    with cf.ThreadPoolExecutor(2) as ex:  # both replicas find it ended at once: one claim wins
        got = list(ex.map(results, [a, b]))
    assert got[0] == got[1] == [f"draft-{i:04d}" for i in range(12)]
    assert results(a) == got[0]  # and a later read settles nothing again

    settled = _settled_lines(a, b)
    assert len(settled) == 1
    assert settled[0]["cost_usd"] == expected / 1e6
    assert settled[0]["batch_id"] == batch_id
    assert _budget_keys(r) == (expected, expected)  # reservation released, spend counted once
    pages = [a.metrics(), b.metrics()]
    assert sum(metric_value(p, "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") for p in pages) == expected / 1e6
    assert all(metric_value(p, "agentdeploy_gateway_budget_remaining_usd", agent="marketing-drafts") == 50 - expected / 1e6 for p in pages)
    assert httpx.get(a.url + f"/v1/messages/batches/{batch_id}", headers=_h(), timeout=30).json()["processing_status"] == "ended"


def test_restarted_replica_follows_and_settles_what_it_left_unsettled(claude_emulator, gateway_factory, fresh_redis_url):
    """Nobody reads the batch after the restart: the new process resumes following it from the
    store and settles it on its own (before this, the reservation stayed counted forever)."""
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    cfg, env = _shared(claude, fresh_redis_url, batch={"discount": 0.5, "follow_s": 0.05})
    a = gateway_factory(cfg, env=env)
    r = redis.Redis.from_url(fresh_redis_url)
    made = httpx.post(a.url + "/v1/messages/batches", json={"requests": _requests(5)}, headers=_h(), timeout=30)
    assert made.status_code == 200, made.text
    a.stop()
    claude._call("POST", "/_emulator/batches/process", {})
    expected = _batch_priced_micro(claude._call("GET", "/_emulator/batches/usage"))
    assert _budget_keys(r)[1] == 0  # ended upstream, unsettled here

    a = gateway_factory(cfg, env=env)
    deadline = time.monotonic() + 20
    while not _settled_lines(a):  # wait for the proof, bounded
        assert time.monotonic() < deadline, "the restarted gateway never settled the batch it had left"
        time.sleep(0.05)
    assert _budget_keys(r) == (expected, expected)
    assert metric_value(a.metrics(), "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == expected / 1e6


def test_openai_shape_file_and_batch_on_different_replicas(claude_emulator, gateway_factory, fresh_redis_url):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    cfg, env = _shared(claude, fresh_redis_url)
    a, b = gateway_factory(cfg, env=env), gateway_factory(cfg, env=env)
    r = redis.Redis.from_url(fresh_redis_url)

    up = httpx.post(a.url + "/v1/files", headers=AUTH, data={"purpose": "batch"}, files={"file": ("d.jsonl", _lines(6))}, timeout=30)
    assert up.status_code == 200, up.text
    fid = up.json()["id"]
    assert httpx.get(b.url + f"/v1/files/{fid}/content", headers=AUTH, timeout=30).content == _lines(6)
    made = httpx.post(b.url + "/v1/batches", headers=AUTH, json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}, timeout=30)
    assert made.status_code == 200, made.text
    oa_id = made.json()["id"]
    claude._call("POST", "/_emulator/batches/process", {})
    expected = _batch_priced_micro(claude._call("GET", "/_emulator/batches/usage"))

    a.stop()
    a = gateway_factory(cfg, env=env)
    done = httpx.get(a.url + f"/v1/batches/{oa_id}", headers=AUTH, timeout=30).json()
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 6, "completed": 6, "failed": 0}
    out = httpx.get(b.url + f"/v1/files/{done['output_file_id']}/content", headers=AUTH, timeout=30)
    assert sorted(json.loads(x)["custom_id"] for x in out.text.splitlines()) == sorted(f"launch email #{i}" for i in range(6))
    assert [x["id"] for x in httpx.get(b.url + "/v1/batches", headers=AUTH, timeout=30).json()["data"]] == [oa_id]
    assert len(_settled_lines(a, b)) == 1
    assert _budget_keys(r) == (expected, expected)
    # another agent's key does not see it
    assert httpx.get(a.url + f"/v1/batches/{oa_id}", headers={"authorization": f"Bearer {API_KEY}"}, timeout=30).status_code == 404


def test_unreachable_store_is_a_clear_503_not_a_lost_batch(claude_emulator, gateway_factory):
    """Redis down: the gateway still starts (resuming is logged as failed), and the batch
    endpoints answer 503 saying why; nothing is submitted upstream."""
    from tests.support.procs import LOOPBACK, free_port

    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    cfg, env = _shared(claude, f"redis://{LOOPBACK}:{free_port()}/0")  # nothing listens there
    gw = gateway_factory(cfg, env=env)
    got = httpx.get(gw.url + "/v1/messages/batches/msgbatch_x", headers=_h(), timeout=30)
    assert got.status_code == 503
    assert "batch store unreachable" in got.json()["error"]["message"]
    oa = httpx.get(gw.url + "/v1/batches/batch_x", headers=AUTH, timeout=30)
    assert oa.status_code == 503
    assert "batch store unreachable" in oa.json()["error"]["message"]
    made = httpx.post(gw.url + "/v1/messages/batches", json={"requests": _requests(2)}, headers=_h(), timeout=30)
    assert made.status_code == 503  # the block budget cannot be checked either
    assert httpx.get(claude.base_url + "/v1/messages/batches", headers=_h(claude.api_key)).json()["data"] == []
    deadline = time.monotonic() + 20
    while '"batch_resume_failed"' not in gw.log_text():
        assert time.monotonic() < deadline, "the failed resume was never logged"
        time.sleep(0.05)
