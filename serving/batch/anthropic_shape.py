"""The batch room's Anthropic shape: `/v1/messages/batches` create, retrieve, results, cancel and
list, as the Message Batches API answers them, for a batch agent's key (room.py does the work)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import orjson

from agentdeploy.naming import SHARED_KEY
from agentdeploy.serving.batch.room import BASE, BatchRoom, Refusal, merge_view
from agentdeploy.serving.batch.store import RECORD, BatchStoreUnavailable, load_record
from agentdeploy.serving.batch.upstream import UpstreamError
from agentdeploy.serving.http1 import Handler, Request, Response
from agentdeploy.serving.replies import H_AGENT, H_MODEL, json_reply

_ITEM = re.compile(r"^/v1/messages/batches/([A-Za-z0-9_-]{1,128})(/results|/cancel)?$")
_ONE = re.compile(r"^/v1/messages/batches/[A-Za-z0-9_-]{1,128}$")
_TAIL = re.compile(r"^/v1/messages/batches/[A-Za-z0-9_-]{1,128}/(results|cancel)$")


class AnthropicBatches:
    def __init__(self, room: BatchRoom) -> None:
        self.room = room

    def exact(self) -> dict[tuple[str, str], Handler]:
        return {("POST", BASE): self.create, ("GET", BASE): self.list}

    def patterns(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        return [("GET", _ONE, self.retrieve), ("GET", _TAIL, self.results), ("POST", _TAIL, self.cancel)]

    async def _guarded(self, request: Request, work: Callable[[str], Awaitable[Response]]) -> Response:
        """Run a handler for the key's owner; every refusal is answered in the API's error shape."""
        t_in, owner = time.perf_counter(), ""
        try:
            owner = self.room.owner(request)
            return await work(owner)
        except UpstreamError as err:
            no = Refusal(err.status, err.kind, err.message)
        except BatchStoreUnavailable as err:
            no = Refusal(503, "overloaded_error", f"batch store unreachable ({err}); retry shortly", {"retry-after": "1"})
        except Refusal as refused:
            no = refused
        self.room.gw.ledger.refused(owner, "anthropic", no.status, no.message, t_in)
        return self.room.gw.replies.error("anthropic", no.status, no.kind, no.message, no.headers)

    def _id(self, request: Request) -> str:
        found = _ITEM.match(request.path)
        return found.group(1) if found else ""

    async def create(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            try:
                body = orjson.loads(request.body)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise Refusal(400, "invalid_request_error", "request body must be a JSON object with `requests`")
            rec, made = await self.room.submit(owner, body.get("requests"), time.perf_counter())
            view = merge_view(rec, made, self.room.results_url(request, rec.id))
            return json_reply(200, view, {H_AGENT: rec.agent, H_MODEL: rec.model, "x-agentdeploy-reserved-usd": f"{rec.reserved / 1e6:.6f}"})
        return await self._guarded(request, work)

    async def retrieve(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            rec = await self.room.record_for(owner, self._id(request))
            return json_reply(200, await self.room.view(request, rec))
        return await self._guarded(request, work)

    async def cancel(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            rec = await self.room.record_for(owner, self._id(request))
            client = self.room.client(rec.upstream)
            parts = [await client.cancel(p) for p in rec.parts]
            return json_reply(200, merge_view(rec, parts, self.room.results_url(request, rec.id)))
        return await self._guarded(request, work)

    async def results(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            rec = await self.room.record_for(owner, self._id(request))
            lines = await self.room.fetch_results(rec)
            body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
            return Response(200, body=body, content_type="application/x-jsonl", headers={H_AGENT: rec.agent})
        return await self._guarded(request, work)

    async def list(self, request: Request) -> Response:
        async def work(owner: str) -> Response:
            ids = await self.room.store.ids(RECORD, None if owner == SHARED_KEY else owner)
            query = dict(p.partition("=")[::2] for p in request.query.split("&") if p)
            if query.get("after_id") in ids:
                ids = ids[ids.index(query["after_id"]) + 1:]
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else 20
            if not 1 <= limit <= 1000:
                raise Refusal(400, "invalid_request_error", "limit: between 1 and 1000")
            page = []
            for batch_id in ids[:limit]:
                rec = await load_record(self.room.store, batch_id)
                if rec is not None:  # expired from the store between the index and the read
                    page.append(await self.room.view(request, rec))
            return json_reply(200, {"data": page, "has_more": len(ids) > limit,
                                    "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})
        return await self._guarded(request, work)
