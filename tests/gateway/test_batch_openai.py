"""The batch room's OpenAI shape: upload a JSONL file, create a batch, follow it, read the output
and error files; translated to Message Batches for the marketing batch agent, settled at batch
prices like the Anthropic shape."""

from __future__ import annotations

import json

import httpx

from tests.gateway.helpers import env_for, metric_value
from tests.gateway.test_batch_gateway import BRAND, MARKETING_KEY, _batch_priced_micro, _config

N = 100
AUTH = {"authorization": f"Bearer {MARKETING_KEY}"}


def _lines(n: int) -> bytes:
    rows = [{"custom_id": f"launch email #{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-4o-mini", "max_tokens": 5000,
                      "messages": [{"role": "system", "content": BRAND}, {"role": "user", "content": f"a launch email for product {i}"}]}}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_openai_shape_batch_end_to_end(claude_emulator, gateway_factory):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    claude.configure(output_tokens=300)
    gw = gateway_factory(_config(claude), env=env_for(claude))

    up = httpx.post(gw.url + "/v1/files", headers=AUTH, data={"purpose": "batch"}, files={"file": ("drafts.jsonl", _lines(N), "application/jsonl")}, timeout=30)
    assert up.status_code == 200, up.text
    f = up.json()
    assert f["object"] == "file"
    assert f["purpose"] == "batch"
    assert f["bytes"] == len(_lines(N))

    r = httpx.post(gw.url + "/v1/batches", headers=AUTH, json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                              "completion_window": "24h"}, timeout=30)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["object"] == "batch"
    assert b["status"] == "in_progress"
    assert b["request_counts"] == {"total": N, "completed": 0, "failed": 0}

    claude._call("POST", "/_emulator/batches/process", {"requests": 50})
    mid = httpx.get(gw.url + f"/v1/batches/{b['id']}", headers=AUTH, timeout=30).json()
    assert mid["status"] == "in_progress"
    assert mid["request_counts"]["completed"] == 50
    assert mid["output_file_id"] is None
    claude._call("POST", "/_emulator/batches/process", {})
    done = httpx.get(gw.url + f"/v1/batches/{b['id']}", headers=AUTH, timeout=30).json()
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": N, "completed": N, "failed": 0}
    assert done["error_file_id"] is None

    out = httpx.get(gw.url + f"/v1/files/{done['output_file_id']}/content", headers=AUTH, timeout=30)
    assert out.status_code == 200
    lines = [json.loads(x) for x in out.text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"launch email #{i}" for i in range(N))  # the client's ids back
    bodies = [x["response"]["body"] for x in lines]
    assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in lines)
    assert all(body["object"] == "chat.completion" and body["model"] == "claude-haiku-4-5" for body in bodies)
    assert all(body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 256 for body in bodies)
    cached = [body["usage"]["prompt_tokens_details"]["cached_tokens"] for body in bodies]
    assert sum(1 for c in cached if c == 0) == 1 and sum(1 for c in cached if c > 4096) == N - 1  # cache reads after the first

    expected = _batch_priced_micro(claude._call("GET", "/_emulator/batches/usage"))
    assert metric_value(gw.metrics(), "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == expected / 1e6


def test_openai_shape_errors_and_cancel(claude_emulator, gateway_factory):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    gw = gateway_factory(_config(claude), env=env_for(claude))
    bad = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
    f = httpx.post(gw.url + "/v1/files", headers=AUTH, data={"purpose": "batch"}, files={"file": ("x.jsonl", bad)}, timeout=30).json()
    r = httpx.post(gw.url + "/v1/batches", headers=AUTH, json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}, timeout=30)
    assert r.status_code == 400
    assert "line 1" in r.json()["error"]["message"]
    assert httpx.post(gw.url + "/v1/files", headers={"authorization": "Bearer nope"}, data={"purpose": "batch"},
                      files={"file": ("x.jsonl", bad)}, timeout=30).status_code == 401

    f = httpx.post(gw.url + "/v1/files", headers=AUTH, data={"purpose": "batch"}, files={"file": ("d.jsonl", _lines(4))}, timeout=30).json()
    b = httpx.post(gw.url + "/v1/batches", headers=AUTH, json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}, timeout=30).json()
    claude._call("POST", "/_emulator/batches/process", {"requests": 1})
    c = httpx.post(gw.url + f"/v1/batches/{b['id']}/cancel", headers=AUTH, timeout=30).json()
    assert c["status"] == "cancelling"
    claude._call("POST", "/_emulator/batches/process", {})
    end = httpx.get(gw.url + f"/v1/batches/{b['id']}", headers=AUTH, timeout=30).json()
    assert end["status"] == "cancelled"
    assert end["request_counts"] == {"total": 4, "completed": 1, "failed": 3}
    errs = [json.loads(x) for x in httpx.get(gw.url + f"/v1/files/{end['error_file_id']}/content", headers=AUTH, timeout=30).text.splitlines()]
    assert len(errs) == 3
    assert all(e["error"]["code"] == "batch_canceled" and e["response"] is None for e in errs)
    listed = httpx.get(gw.url + "/v1/batches", headers=AUTH, timeout=30).json()
    assert [x["id"] for x in listed["data"]] == [b["id"]]
