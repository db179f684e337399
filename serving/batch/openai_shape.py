"""The batch room's OpenAI shape, for OpenAI-SDK users: `/v1/files` + `/v1/batches`, JSONL in and
out, translated to and from Message Batches.

In: a `purpose=batch` file of `{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}` lines; each body becomes a Messages request (protocol/requests.py) and the whole goes
through the Anthropic shape's submit (plan's model, cap, cache, budget at batch prices). The
custom_ids travel as `req-<n>` (the Batches API takes only [a-zA-Z0-9_-]{1,64}) and come back as
the client's. Out: the batch in OpenAI's `batch` object (status, request_counts total /
completed / failed, output_file_id / error_file_id once ended) and the results as an output
file of chat.completion responses and an error file. Files and batches live in the batch store
(store.py) beside the Message Batch records: any replica serves them, a restart keeps them.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

import orjson

from agentdeploy.naming import SHARED_KEY
from agentdeploy.serving.batch.prepare import usage_of
from agentdeploy.serving.batch.store import BatchRecord, BatchStoreUnavailable, load_record
from agentdeploy.serving.http1 import Handler, Request, Response
from agentdeploy.serving.protocol.events import STOP_TO_OPENAI, JsonObject
from agentdeploy.serving.protocol.requests import openai_to_anthropic_request
from agentdeploy.serving.protocol.writers import openai_usage
from agentdeploy.serving.replies import json_reply

if TYPE_CHECKING:
    from agentdeploy.serving.batch.room import BatchRoom

ENDPOINT = "/v1/chat/completions"
_FILE = re.compile(r"^/v1/files/([A-Za-z0-9_-]{1,128})(/content)?$")
_BATCH = re.compile(r"^/v1/batches/([A-Za-z0-9_-]{1,128})(/cancel)?$")


FILE, OABATCH = "file", "oabatch"


@dataclass
class StoredFile:
    id: str
    owner: str
    filename: str
    bytes: int
    created_at: int = field(default_factory=lambda: int(time.time()))

    def view(self) -> JsonObject:
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": "batch"}


@dataclass
class OABatch:
    id: str
    record: str
    #: The batch agent (who may read it).
    owner: str
    input_file_id: str
    #: `req-<n>` -> the client's custom_id
    ids: dict[str, str]
    created_at: int = field(default_factory=lambda: int(time.time()))


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename, bytes)."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise ValueError("expected multipart/form-data with `purpose` and `file`")
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            out[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return out


def completion_of(message: JsonObject, ttl: str | None) -> JsonObject:
    """A Messages answer as an OpenAI chat.completion body."""
    blocks = message.get("content") or []
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    calls = [{"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input", {})).decode()}}
             for b in blocks if b.get("type") == "tool_use"]
    msg: dict[str, Any] = {"role": "assistant", "content": text if (text or not calls) else None}
    if calls:
        msg["tool_calls"] = calls
    return {"id": "chatcmpl-" + str(message.get("id", "")).removeprefix("msg_"), "object": "chat.completion",
            "created": int(time.time()), "model": message.get("model"),
            "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": STOP_TO_OPENAI.get(str(message.get("stop_reason")), "stop")}],
            "usage": openai_usage(usage_of(message.get("usage"), ttl))}


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class OpenAIBatches:
    def __init__(self, room: BatchRoom) -> None:
        self.room = room

    def exact(self) -> dict[tuple[str, str], Handler]:
        return {("POST", "/v1/files"): self.upload, ("POST", "/v1/batches"): self.create, ("GET", "/v1/batches"): self.list}

    def patterns(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        return [("GET", _FILE, self.file), ("GET", _BATCH, self.retrieve), ("POST", _BATCH, self.cancel)]

    # ------------------------------------------------------------------ helpers
    def _error(self, no: Exception, owner: str, t_in: float) -> Response:
        status, kind, message = getattr(no, "status", 500), getattr(no, "kind", "api_error"), getattr(no, "message", str(no))
        self.room.gw.ledger.refused(owner, "openai", status, message, t_in)
        return self.room.gw.replies.error("openai", status, kind, message)

    async def _guarded(self, request: Request, work: Any) -> Response:
        from agentdeploy.serving.batch.room import Refusal
        from agentdeploy.serving.batch.upstream import UpstreamError

        t_in, owner = time.perf_counter(), ""
        try:
            owner = self.room.owner(request)
            result: Response = await work(owner)
            return result
        except (Refusal, _Refused, UpstreamError) as no:
            return self._error(no, owner, t_in)
        except BatchStoreUnavailable as err:
            return self._error(_Refused(503, "server_error", f"batch store unreachable ({err}); retry shortly"), owner, t_in)

    async def _file(self, key: str, owner: str) -> StoredFile:
        doc = await self.room.store.get(FILE, key)
        if doc is None or (owner != SHARED_KEY and doc.get("owner") != owner):
            raise _Refused(404, "not_found", f"no file with id {key!r}")
        return StoredFile(**doc)

    async def _batch(self, key: str, owner: str, what: str = "batch") -> OABatch:
        doc = await self.room.store.get(OABATCH, key)
        if doc is None or (owner != SHARED_KEY and doc.get("owner") != owner):
            raise _Refused(404, "not_found", f"no {what} with id {key!r}")
        return OABatch(**doc)

    async def _record(self, b: OABatch) -> BatchRecord:
        rec = await load_record(self.room.store, b.record)
        if rec is None:  # the file index outlived the record (retention): say so plainly
            raise _Refused(404, "not_found", f"batch {b.id!r}: its Message Batch {b.record} is no longer kept")
        return rec

    def _translate(self, data: bytes, owner: str) -> tuple[list[JsonObject], dict[str, str]]:
        agent = self.room.gw.runtime.agents.get(owner)
        default = agent.spec.max_tokens_default if agent else 1024
        requests: list[JsonObject] = []
        ids: dict[str, str] = {}
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise _Refused(400, "invalid_request_error", f"input file line {n}: not valid JSON") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str) or not isinstance(obj.get("body"), dict):
                raise _Refused(400, "invalid_request_error", f"input file line {n}: needs custom_id, method, url and body")
            if obj.get("url") != ENDPOINT or obj.get("method", "POST") != "POST":
                raise _Refused(400, "invalid_request_error", f"input file line {n}: url must be POST {ENDPOINT} (the only batch endpoint served)")
            if obj["custom_id"] in ids.values():
                raise _Refused(400, "invalid_request_error", f"input file line {n}: custom_id {obj['custom_id']!r} is used twice")
            body = obj["body"]
            asked = body.get("max_completion_tokens") or body.get("max_tokens") or default
            params = openai_to_anthropic_request(body, str(body.get("model") or ""), int(asked) if isinstance(asked, int) else default)
            params.pop("stream", None)
            params.pop("stream_options", None)
            if body.get("stream"):
                params["stream"] = True  # refused by prepare, naming the line's request
            rid = f"req-{len(requests)}"
            ids[rid] = obj["custom_id"]
            requests.append({"custom_id": rid, "params": params})
        return requests, ids

    def view(self, b: OABatch, rec: BatchRecord, parts_view: JsonObject) -> JsonObject:
        status = str(parts_view["processing_status"])
        counts = parts_view["request_counts"]
        ended = status == "ended"
        failed = int(counts["errored"]) + int(counts["canceled"]) + int(counts["expired"])
        if not ended:
            oa_status = "cancelling" if status == "canceling" else "in_progress"
        elif parts_view.get("cancel_initiated_at"):
            oa_status = "cancelled"
        elif counts["expired"] and not counts["succeeded"]:
            oa_status = "expired"
        else:
            oa_status = "completed"
        return {
            "id": b.id, "object": "batch", "endpoint": ENDPOINT, "errors": None, "input_file_id": b.input_file_id,
            "completion_window": "24h", "status": oa_status,
            "output_file_id": f"file-out-{b.id}" if ended else None, "error_file_id": f"file-err-{b.id}" if ended and failed else None,
            "created_at": b.created_at, "in_progress_at": b.created_at, "expires_at": b.created_at + 24 * 3600,
            "completed_at": int(time.time()) if ended else None, "failed_at": None, "expired_at": None,
            "cancelling_at": b.created_at if parts_view.get("cancel_initiated_at") else None, "cancelled_at": None,
            "request_counts": {"total": rec.requests, "completed": int(counts["succeeded"]), "failed": failed},
            "metadata": {"agent": rec.agent, "message_batch_id": rec.id},
        }

    # ------------------------------------------------------------------ handlers
    async def upload(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            try:
                form = parse_multipart(request.headers.get("content-type") or "", request.body)
            except ValueError as err:
                raise _Refused(400, "invalid_request_error", str(err)) from None
            if form.get("purpose", (None, b""))[1].decode(errors="replace").strip() != "batch":
                raise _Refused(400, "invalid_request_error", "purpose: only 'batch' files are taken here")
            if "file" not in form:
                raise _Refused(400, "invalid_request_error", "file: a JSONL file is required")
            filename, data = form["file"]
            f = StoredFile("file-" + secrets.token_hex(12), owner, filename or "batch.jsonl", len(data))
            await self.room.store.put(FILE, f.id, owner, asdict(f), data)
            return json_reply(200, f.view())
        return await self._guarded(request, work)

    async def create(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            try:
                body = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("input_file_id"), str):
                raise _Refused(400, "invalid_request_error", "input_file_id: required")
            if body.get("endpoint") != ENDPOINT:
                raise _Refused(400, "invalid_request_error", f"endpoint: only {ENDPOINT} is served as a batch")
            if body.get("completion_window", "24h") != "24h":
                raise _Refused(400, "invalid_request_error", "completion_window: only '24h' is supported")
            f = await self._file(body["input_file_id"], owner)
            requests, ids = self._translate(await self.room.store.data(FILE, f.id) or b"", owner)
            rec, made = await self.room.submit(owner, requests, time.perf_counter())
            b = OABatch("batch_" + secrets.token_hex(12), rec.id, rec.agent, f.id, ids)
            await self.room.store.put(OABATCH, b.id, b.owner, asdict(b))
            from agentdeploy.serving.batch.room import merge_view

            return json_reply(200, self.view(b, rec, merge_view(rec, made, "")))
        return await self._guarded(request, work)

    async def _parts(self, b: OABatch) -> tuple[BatchRecord, JsonObject]:
        from agentdeploy.serving.batch.room import merge_view

        rec = await self._record(b)
        view = merge_view(rec, await self.room.states(rec), "")
        if view["processing_status"] == "ended" and not rec.settled:
            await self.room.fetch_results(rec)
        return rec, view

    async def retrieve(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            found = _BATCH.match(request.path)
            b = await self._batch(found.group(1) if found else "", owner)
            rec, view = await self._parts(b)
            return json_reply(200, self.view(b, rec, view))
        return await self._guarded(request, work)

    async def cancel(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            found = _BATCH.match(request.path)
            if not found or not found.group(2):
                raise _Refused(404, "not_found", "unknown path")
            b = await self._batch(found.group(1), owner)
            rec = await self._record(b)
            client = self.room.client(rec.upstream)
            for p in rec.parts:
                await client.cancel(p)
            rec, view = await self._parts(b)
            return json_reply(200, self.view(b, rec, view))
        return await self._guarded(request, work)

    async def list(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            mine = await self.room.store.ids(OABATCH, None if owner == SHARED_KEY else owner)
            data = []
            for key in mine[:20]:
                doc = await self.room.store.get(OABATCH, key)
                if doc is not None:
                    b = OABatch(**doc)
                    data.append(self.view(b, *(await self._parts(b))))
            return json_reply(200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None, "has_more": len(mine) > 20})
        return await self._guarded(request, work)

    async def file(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            found = _FILE.match(request.path)
            fid = found.group(1) if found else ""
            content = bool(found and found.group(2))
            for prefix in ("file-out-", "file-err-"):
                if fid.startswith(prefix):
                    b = await self._batch(fid[len(prefix):], owner, "file")
                    data = await self._output(b, errors=prefix == "file-err-")
                    if content:
                        return Response(200, body=data, content_type="application/jsonl")
                    name = f"{b.id}_{'errors' if prefix == 'file-err-' else 'output'}.jsonl"
                    return json_reply(200, {**StoredFile(fid, owner, name, len(data)).view(), "purpose": "batch_output"})
            f = await self._file(fid, owner)
            if content:
                return Response(200, body=await self.room.store.data(FILE, f.id) or b"", content_type="application/jsonl")
            return json_reply(200, f.view())
        return await self._guarded(request, work)

    async def _output(self, b: OABatch, errors: bool) -> bytes:
        rec = await self._record(b)
        agent = self.room.gw.runtime.agents.get(rec.agent)
        ttl = agent.spec.cache.ttl if agent else None
        lines = []
        for n, line in enumerate(await self.room.fetch_results(rec)):
            res = line.get("result") or {}
            cid = b.ids.get(str(line.get("custom_id")), str(line.get("custom_id")))
            rid = f"batch_req_{b.id[6:]}_{n}"
            if res.get("type") == "succeeded" and not errors:
                lines.append({"id": rid, "custom_id": cid, "response": {"status_code": 200, "request_id": rid,
                              "body": completion_of(res.get("message") or {}, ttl)}, "error": None})
            elif res.get("type") != "succeeded" and errors:
                err = ((res.get("error") or {}).get("error") or {}) if res.get("type") == "errored" else {}
                code = str(err.get("type") or f"batch_{res.get('type')}")
                lines.append({"id": rid, "custom_id": cid, "response": None,
                              "error": {"code": code, "message": str(err.get("message") or f"request {res.get('type')} before it ran")}})
        return b"".join(orjson.dumps(x) + b"\n" for x in lines)
