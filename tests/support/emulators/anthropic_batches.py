"""Message Batches in the Claude emulator, as the real API behaves (checked against
platform.claude.com/docs/en/build-with-claude/batch-processing and the "Create a Message Batch"
reference, as of 2026-12):

- `POST /v1/messages/batches` {"requests": [{"custom_id", "params"}]}: 1 to 100,000 requests, at
  most 256 MB; `custom_id` 1-64 characters of [a-zA-Z0-9_-], unique in the batch. The batch
  answers at once with `processing_status: "in_progress"` and every request counted `processing`.
- `GET /v1/messages/batches/{id}`: `type: "message_batch"`, `processing_status` (in_progress,
  canceling, ended), `request_counts` {processing, succeeded, errored, canceled, expired},
  `created_at`, `expires_at` (24 h after creation), `ended_at`, `cancel_initiated_at`,
  `archived_at`, `results_url` (set once processing ended).
- `GET /v1/messages/batches` (`limit` 1-1000, default 20, `after_id`, `before_id`; newest first),
  `POST .../{id}/cancel`, `DELETE .../{id}` (ended batches only).
- `GET .../{id}/results`: JSONL, one `{"custom_id", "result"}` a line; result types `succeeded`
  (with the `message`, usage with `service_tier: "batch"` and prompt caching), `errored` (an
  `error` object), `canceled`, `expired`. Before the end the results are not ready: a 400.

Processing is asynchronous but deterministic: nothing runs until a test drives the batch clock.

  POST /_emulator/batches/process  {"id": optional, "requests": N (default all)} run N requests
                                   (in submission order), through the same prompt cache as
                                   /v1/messages: the requests after the first sharing a prefix read it
  POST /_emulator/batches/advance  {"seconds": S} move the batch clock on; batches past their
                                   24 h expire what is still processing
  POST /_emulator/batches/config   {"auto": true} process every batch completely when it is created
  GET  /_emulator/batches/usage    billed usage of every batch request, as Admin API usage rows
                                   (service_tier "batch"): load them into the admin emulator to see
                                   batch spend at half price in its cost report
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from tests.support.emulators.anthropic import ClaudeEmulator

#: The API's limits on one batch (docs as above).
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
EXPIRY = timedelta(hours=24)
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _rfc3339(t: datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t else None


@dataclass
class Batch:
    id: str
    api_key: str
    created_at: datetime
    requests: list[dict[str, Any]]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    next_index: int = 0

    @property
    def expires_at(self) -> datetime:
        return self.created_at + EXPIRY

    def counts(self) -> dict[str, int]:
        out = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for r in self.requests:
            res = self.results.get(r["custom_id"])
            out[res["type"] if res else "processing"] += 1
        return out

    def status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "canceling" if self.cancel_initiated_at else "in_progress"

    def view(self, base_url: str) -> dict[str, Any]:
        ended = self.ended_at is not None
        return {
            "id": self.id, "type": "message_batch", "processing_status": self.status(),
            "request_counts": self.counts(), "ended_at": _rfc3339(self.ended_at),
            "created_at": _rfc3339(self.created_at), "expires_at": _rfc3339(self.expires_at),
            "archived_at": None, "cancel_initiated_at": _rfc3339(self.cancel_initiated_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if ended else None,
        }


def _err(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class BatchesRoom:
    """The Message Batches endpoints and their clock, mounted on a `ClaudeEmulator`."""

    def __init__(self, emu: ClaudeEmulator) -> None:
        self.emu = emu
        self.batches: dict[str, Batch] = {}
        self.offset = timedelta(0)
        self.auto = False
        #: Billed usage rows (Admin API shape), one per succeeded request.
        self.usage: list[dict[str, Any]] = []
        r = emu.app.router
        r.add_post("/v1/messages/batches", self.create)
        r.add_get("/v1/messages/batches", self.list)
        r.add_get("/v1/messages/batches/{id}", self.retrieve)
        r.add_delete("/v1/messages/batches/{id}", self.delete)
        r.add_post("/v1/messages/batches/{id}/cancel", self.cancel)
        r.add_get("/v1/messages/batches/{id}/results", self.results)
        r.add_post("/_emulator/batches/process", self.process_ctl)
        r.add_post("/_emulator/batches/advance", self.advance_ctl)
        r.add_post("/_emulator/batches/config", self.config_ctl)
        r.add_get("/_emulator/batches/usage", self.usage_ctl)
        r.add_delete("/_emulator/batches", self.reset_ctl)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def _own(self, request: web.Request) -> Batch | web.Response:
        bad = self.emu._check_headers(request)
        if bad:
            return bad
        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.api_key != request.headers.get("x-api-key"):
            return _err(404, f"message batch {request.match_info['id']} not found", "not_found_error")
        return batch

    # ------------------------------------------------------------------ API
    async def create(self, request: web.Request) -> web.Response:
        bad = self.emu._check_headers(request)
        if bad:
            return bad
        raw = await request.read()
        if len(raw) > MAX_BYTES:
            return _err(413, f"batch of {len(raw)} bytes is over the 256 MB limit", "request_too_large")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _err(400, "request body is not valid JSON")
        reqs = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(reqs, list) or not reqs:
            return _err(400, "requests: at least one request is required")
        if len(reqs) > MAX_REQUESTS:
            return _err(400, f"requests: at most {MAX_REQUESTS} requests per batch, got {len(reqs)}")
        seen: set[str] = set()
        for i, r in enumerate(reqs):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
                return _err(400, f"requests.{i}.custom_id: 1-64 characters of letters, digits, - and _")
            if cid in seen:
                return _err(400, f"requests.{i}.custom_id: {cid!r} is used twice; custom_id must be unique in a batch")
            seen.add(cid)
            if not isinstance(r.get("params"), dict):
                return _err(400, f"requests.{i}.params: Input should be a valid dictionary")
        bid = "msgbatch_emu" + hashlib.sha1(f"{time.time_ns()}-{len(self.batches)}".encode()).hexdigest()[:20]
        batch = Batch(bid, request.headers["x-api-key"], self.now(), [dict(r) for r in reqs])
        self.batches[bid] = batch
        if self.auto:
            self.process(batch, None)
        return web.json_response(batch.view(self._base(request)))

    async def list(self, request: web.Request) -> web.Response:
        bad = self.emu._check_headers(request)
        if bad:
            return bad
        key = request.headers.get("x-api-key")
        mine = [b for b in reversed(self.batches.values()) if b.api_key == key]  # newest first
        ids = [b.id for b in mine]
        if request.query.get("after_id") in ids:
            mine = mine[ids.index(request.query["after_id"]) + 1:]
        elif request.query.get("before_id") in ids:
            mine = mine[: ids.index(request.query["before_id"])]
        try:
            limit = int(request.query.get("limit", 20))
        except ValueError:
            return _err(400, "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return _err(400, "limit: Input should be between 1 and 1000")
        page = mine[:limit]
        base = self._base(request)
        return web.json_response({"data": [b.view(base) for b in page], "has_more": len(mine) > limit,
                                  "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None})

    async def retrieve(self, request: web.Request) -> web.Response:
        batch = self._own(request)
        if isinstance(batch, web.Response):
            return batch
        return web.json_response(batch.view(self._base(request)))

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self._own(request)
        if isinstance(batch, web.Response):
            return batch
        if batch.ended_at is None and batch.cancel_initiated_at is None:
            batch.cancel_initiated_at = self.now()
        return web.json_response(batch.view(self._base(request)))

    async def delete(self, request: web.Request) -> web.Response:
        batch = self._own(request)
        if isinstance(batch, web.Response):
            return batch
        if batch.ended_at is None:
            return _err(400, "a batch must end (or be canceled) before it can be deleted")
        del self.batches[batch.id]
        return web.json_response({"id": batch.id, "type": "message_batch_deleted"})

    async def results(self, request: web.Request) -> web.Response:
        batch = self._own(request)
        if isinstance(batch, web.Response):
            return batch
        if batch.ended_at is None:
            return _err(400, f"message batch {batch.id} has not ended; its results are available once processing_status is 'ended'")
        lines = [orjson.dumps({"custom_id": r["custom_id"], "result": batch.results[r["custom_id"]]}) for r in batch.requests]
        return web.Response(body=b"\n".join(lines) + b"\n", content_type="application/x-jsonl")

    # ------------------------------------------------------------------ processing
    def _run_one(self, batch: Batch, req: dict[str, Any]) -> dict[str, Any]:
        from tests.support.emulators.anthropic import _generate, compute_usage

        params = req["params"]
        bad = self.emu._validate(params)
        if bad is None and params.get("stream"):
            bad = _err(400, "stream: streaming is not supported in a Message Batch")
        if bad is not None:
            return {"type": "errored", "error": orjson.loads(bad.body)}  # type: ignore[arg-type]
        s = self.emu.state
        model = params["model"]
        usage = compute_usage(s, params, model)
        if usage["total"] > s.context_tokens:
            return {"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error",
                    "message": f"prompt is too long: {usage['total']} tokens > {s.context_tokens} maximum"}}}
        target = s.output_tokens
        pieces, stop_reason, stop_seq = _generate(params, min(params["max_tokens"], target))
        if target > params["max_tokens"] and stop_reason == "end_turn":
            stop_reason = "max_tokens"
        in_usage = {k: v for k, v in usage.items() if k != "total"}
        out = len(pieces)
        msg_id = "msg_emu" + hashlib.sha1(f"{batch.id}-{req['custom_id']}".encode()).hexdigest()[:20]
        message = {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": "".join(pieces)}] if pieces else [],
                   "stop_reason": stop_reason, "stop_sequence": stop_seq,
                   "usage": {**in_usage, "output_tokens": out, "service_tier": "batch"}}
        self.usage.append({
            "at": _rfc3339(self.now()), "api_key_id": batch.api_key[-12:], "model": model, "service_tier": "batch",
            "uncached_input_tokens": in_usage["input_tokens"], "cache_read_input_tokens": in_usage["cache_read_input_tokens"],
            "cache_creation_5m": in_usage["cache_creation"]["ephemeral_5m_input_tokens"],
            "cache_creation_1h": in_usage["cache_creation"]["ephemeral_1h_input_tokens"], "output_tokens": out})
        return {"type": "succeeded", "message": message}

    def _finish(self, batch: Batch, kind: str) -> None:
        for r in batch.requests:
            batch.results.setdefault(r["custom_id"], {"type": kind})
        batch.ended_at = self.now()

    def process(self, batch: Batch, n: int | None) -> None:
        """Run up to `n` of the batch's waiting requests (all when None); a canceling batch
        cancels what is left instead, and a batch whose requests are all done ends."""
        if batch.ended_at is not None:
            return
        if batch.cancel_initiated_at is not None:
            self._finish(batch, "canceled")
            return
        todo = batch.requests[batch.next_index:] if n is None else batch.requests[batch.next_index: batch.next_index + n]
        for req in todo:
            batch.results[req["custom_id"]] = self._run_one(batch, req)
            batch.next_index += 1
        if batch.next_index >= len(batch.requests):
            batch.ended_at = self.now()

    # ------------------------------------------------------------------ control
    async def process_ctl(self, request: web.Request) -> web.Response:
        cfg = orjson.loads(await request.read() or b"{}")
        targets = [self.batches[cfg["id"]]] if cfg.get("id") else list(self.batches.values())
        for b in targets:
            self.process(b, cfg.get("requests"))
        return web.json_response({"batches": {b.id: b.counts() for b in targets}})

    async def advance_ctl(self, request: web.Request) -> web.Response:
        cfg = orjson.loads(await request.read() or b"{}")
        self.offset += timedelta(seconds=float(cfg.get("seconds", 0)))
        now = self.now()
        for b in self.batches.values():
            if b.ended_at is None and now >= b.expires_at:
                self._finish(b, "expired")
        return web.json_response({"now": _rfc3339(now)})

    async def config_ctl(self, request: web.Request) -> web.Response:
        cfg = orjson.loads(await request.read() or b"{}")
        self.auto = bool(cfg.get("auto", self.auto))
        return web.json_response({"auto": self.auto})

    async def usage_ctl(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.usage), content_type="application/json")

    async def reset_ctl(self, request: web.Request) -> web.Response:
        self.batches.clear()
        self.usage.clear()
        self.offset = timedelta(0)
        self.auto = False
        return web.json_response({"ok": True})
