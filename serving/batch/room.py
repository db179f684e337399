"""The batch room: Message Batches for batch agents, with their budget (the HTTP shapes are
anthropic_shape.py and openai_shape.py).

Create: prepare the batch as planned (prepare.py), split it within the API's limits, reserve its
worst case at batch prices, submit each part with the upstream's key. Retrieve / list / cancel /
results: the parts' state merged under one id (the upstream's own id when there is one part).
The first read that finds the batch ended (a client's, or the room's own follower checking every
`batch.follow_s`) fetches its results and settles the budget to what the succeeded results' usage
cost at batch prices (errored, canceled and expired requests bill
nothing), adding tokens and spend to the agent's metrics and one `batch_settled` log line.

The records live in the batch store (store.py): Redis beside the budgets when the gateway's
budget store is Redis, so any replica serves any batch, a restarted replica resumes following
the batches not yet settled, and settlement happens exactly once across replicas.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from agentdeploy.naming import SHARED_KEY
from agentdeploy.serving.admission import owner_of
from agentdeploy.serving.batch.limits import TooLarge, split
from agentdeploy.serving.batch.prepare import BatchInputError, batch_prices, exact_cost, micro_ceil, prepare, usage_of
from agentdeploy.serving.batch.store import (
    RECORD,
    BatchRecord,
    BatchStore,
    BatchStoreUnavailable,
    MemoryBatchStore,
    RedisBatchStore,
    load_record,
    save_record,
)
from agentdeploy.serving.batch.upstream import BatchesClient, UpstreamError
from agentdeploy.serving.budget import BudgetStore, BudgetStoreUnavailable, RedisBudgetStore, window_key
from agentdeploy.serving.deliver import Ledger
from agentdeploy.serving.httpmsg import Handler, Request, Router
from agentdeploy.serving.protocol.events import ApiKind, JsonObject
from agentdeploy.serving.replies import H_ERROR, Replies
from agentdeploy.serving.runtime import Agent, Runtime
from agentdeploy.tokens import TokenPrices

BASE = "/v1/messages/batches"
#: Paths that take a request body (the gateway's gate checks their key before reading it).
BATCH_PATHS: dict[str, ApiKind] = {BASE: "anthropic", "/v1/files": "openai", "/v1/batches": "openai"}
COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


class GatewayParts(Protocol):
    """What the room uses of the gateway (read at each request: a reload swaps the runtime)."""

    runtime: Runtime
    store: BudgetStore
    ledger: Ledger
    replies: Replies
    session: aiohttp.ClientSession | None
    draining: bool
    environ: dict[str, str] | None


class Refusal(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def merge_view(record: BatchRecord, parts: list[JsonObject], results_url: str) -> JsonObject:
    """The parts' states as one Message Batch object under the record's id."""
    states = [p.get("processing_status") for p in parts]
    status = "in_progress" if "in_progress" in states else "canceling" if "canceling" in states else "ended"
    counts = {k: sum(int((p.get("request_counts") or {}).get(k) or 0) for p in parts) for k in COUNTS}
    ended = [str(p["ended_at"]) for p in parts if p.get("ended_at")]
    canceled = [str(p["cancel_initiated_at"]) for p in parts if p.get("cancel_initiated_at")]
    return {
        "id": record.id, "type": "message_batch", "processing_status": status, "request_counts": counts,
        "ended_at": max(ended) if status == "ended" and ended else None,
        "created_at": min(str(p.get("created_at")) for p in parts), "expires_at": max(str(p.get("expires_at")) for p in parts),
        "archived_at": None, "cancel_initiated_at": min(canceled) if canceled else None,
        "results_url": results_url if status == "ended" else None,
    }


def open_store(gw: GatewayParts) -> BatchStore:
    """Redis beside the budgets when the gateway counts them in Redis; this process otherwise."""
    cfg = gw.runtime.config
    spec = cfg.budget_store
    url = spec.redis_url.resolve(gw.environ) if isinstance(gw.store, RedisBudgetStore) and spec.redis_url else None
    return RedisBatchStore(url, f"{spec.key_prefix}:{cfg.stack}") if url else MemoryBatchStore(gw.store)


class BatchRoom:
    def __init__(self, gateway: GatewayParts) -> None:
        self.gw = gateway
        self.store = open_store(gateway)
        self._locks: dict[str, asyncio.Lock] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._resume: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the batches no replica has settled yet (this one's before a restart, too), in
        the background: an unreachable store does not hold the listener back."""
        self._resume = asyncio.ensure_future(self._resume_following())

    async def _resume_following(self) -> None:
        try:
            for batch_id in await self.store.ids(RECORD, None):
                rec = await load_record(self.store, batch_id)
                if rec is not None and not rec.settled:
                    self._follow(rec)
        except BatchStoreUnavailable as err:  # the next client read settles them instead
            self.gw.ledger.log({"event": "batch_resume_failed", "error": str(err)})

    async def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        for task in list(self._followers.values()):
            task.cancel()
        await self.store.close()

    def _follow(self, rec: BatchRecord) -> None:
        if rec.id in self._followers:
            return
        agent = self.gw.runtime.agents.get(rec.agent)
        follow_s = agent.spec.batch.follow_s if agent and agent.spec.batch else 60.0
        task = asyncio.ensure_future(self.follow(rec, follow_s))
        self._followers[rec.id] = task
        task.add_done_callback(lambda _t: self._followers.pop(rec.id, None))

    def routes(self, exact: Mapping[tuple[str, str], Handler]) -> Router:
        """The client port's routes plus both shapes' (the shapes are the HTTP edges of this room)."""
        from agentdeploy.serving.batch.anthropic_shape import AnthropicBatches
        from agentdeploy.serving.batch.openai_shape import OpenAIBatches

        an, oa = AnthropicBatches(self), OpenAIBatches(self)
        return Router({**exact, **an.exact(), **oa.exact()}, an.patterns() + oa.patterns())

    # ------------------------------------------------------------------ helpers

    def owner(self, request: Request) -> str:
        owner = owner_of(self.gw.runtime, request.headers)
        if owner is None:
            raise Refusal(401, "authentication_error", "invalid or missing API key")
        return owner

    def client(self, upstream: str) -> BatchesClient:
        session = self.gw.session
        if session is None:
            raise Refusal(503, "overloaded_error", "gateway is starting; retry shortly", {"retry-after": "1"})
        return BatchesClient(session, self.gw.runtime.upstreams[upstream])

    def batch_agent(self, owner: str, wanted: Any) -> Agent:
        rt = self.gw.runtime
        if owner == SHARED_KEY:
            agent = rt.agents.get(wanted) if isinstance(wanted, str) else None
            if agent is None:
                raise Refusal(400, "invalid_request_error", f"params.model must name a batch agent; known agents: {', '.join(sorted(rt.agents))}")
        else:
            agent = rt.agents[owner]
        if agent.spec.batch is None:
            raise Refusal(400, "invalid_request_error", f"agent {agent.name!r} is not a batch agent: send its requests to /v1/messages "
                          "(the plan routes it in real time)")
        return agent

    async def record_for(self, owner: str, batch_id: str) -> BatchRecord:
        rec = await load_record(self.store, batch_id)
        if rec is None or (owner != SHARED_KEY and rec.agent != owner):
            raise Refusal(404, "not_found_error", f"message batch {batch_id} not found")
        return rec

    def results_url(self, request: Request, batch_id: str) -> str:
        proto = request.headers.get("x-forwarded-proto") or "http"
        return f"{proto}://{request.headers.get('host') or 'localhost'}{BASE}/{batch_id}/results"

    # ------------------------------------------------------------------ submit
    async def submit(self, owner: str, requests: Any, t_in: float) -> tuple[BatchRecord, list[JsonObject]]:
        """Prepare, reserve, split and submit: the record and the parts' first states."""
        if self.gw.draining:
            raise Refusal(503, "overloaded_error", "gateway is shutting down", {"retry-after": "1"})
        if not isinstance(requests, list) or not requests:
            raise Refusal(400, "invalid_request_error", "requests: a list of {custom_id, params} is required")
        first = requests[0].get("params", {}).get("model") if isinstance(requests[0], dict) and isinstance(requests[0].get("params"), dict) else None
        agent = self.batch_agent(owner, first)
        try:
            prepared = prepare(agent, requests)
            parts = split(prepared.requests)
        except (BatchInputError, TooLarge) as err:
            raise Refusal(400, "invalid_request_error", str(err)) from None
        key, reserved = await self.reserve(agent, prepared.worst_micro)
        upstream = agent.chain[0].upstream.name
        client = self.client(upstream)
        made: list[JsonObject] = []
        try:
            for part in parts:
                made.append(await client.create(part))
        except UpstreamError as err:
            for done in made:  # all or nothing: what went through is canceled, the reservation released
                try:
                    await client.cancel(str(done["id"]))
                except UpstreamError:
                    pass
            if key is not None:
                await self.gw.store.settle(key, reserved, 0)
            raise Refusal(err.status, err.kind, f"Message Batches API: {err.message}") from None
        ids = [str(p["id"]) for p in made]
        rec_id = ids[0] if len(ids) == 1 else "msgbatch_agd" + secrets.token_hex(12)
        rec = BatchRecord(rec_id, agent.name, prepared.model, upstream, ids, len(prepared.requests), key, reserved)
        try:
            await save_record(self.store, rec)
        except BatchStoreUnavailable as err:
            # Submitted but unrecorded: cancel rather than leave a batch nobody can read or settle.
            for p in ids:
                try:
                    await client.cancel(p)
                except UpstreamError:
                    pass
            if key is not None:
                try:
                    await self.gw.store.settle(key, reserved, 0)
                except BudgetStoreUnavailable:
                    pass  # the reservation stays counted: over-, never under-counting
            raise Refusal(503, "overloaded_error", f"batch store unreachable ({err}); the batch was canceled upstream, retry shortly",
                          {"retry-after": "1"}) from None
        self._follow(rec)
        self.gw.ledger.log({"event": "batch_submitted", "agent": agent.name, "batch_id": rec_id, "model": prepared.model,
                            "requests": rec.requests, "parts": len(ids), "reserved_usd": reserved / 1e6,
                            "total_ms": round((time.perf_counter() - t_in) * 1000, 2)})
        return rec, made

    async def reserve(self, agent: Agent, worst_micro: int) -> tuple[str | None, int]:
        budget = agent.spec.budget
        if budget is None:
            return None, 0
        rt = self.gw.runtime
        key = window_key(rt.config.budget_store.key_prefix, rt.config.stack, agent.name)
        try:
            ok = await self.gw.store.reserve(key, worst_micro, agent.budget_limit_micro)
        except BudgetStoreUnavailable:
            if budget.policy != "alert":
                raise Refusal(503, "overloaded_error", f"agent {agent.name!r}'s budget cannot be checked (budget store unreachable); retry shortly",
                              {H_ERROR: "budget_store_unavailable", "retry-after": "1"}) from None
            return None, 0
        if not ok:
            self.gw.ledger.metrics.budget_rejections.inc((agent.name, "blocked"))
            raise Refusal(429, "budget_exceeded", f"agent {agent.name!r}'s budget of ${budget.monthly_usd:g} this month cannot hold this "
                          f"batch's worst case (${worst_micro / 1e6:.6f} at batch prices); send fewer requests or lower max_tokens",
                          {H_ERROR: "budget_exceeded"})
        return key, worst_micro

    # ------------------------------------------------------------------ follow and settle
    async def states(self, rec: BatchRecord) -> list[JsonObject]:
        client = self.client(rec.upstream)
        return [await client.retrieve(p) for p in rec.parts]

    async def fetch_results(self, rec: BatchRecord) -> list[JsonObject]:
        client = self.client(rec.upstream)
        out: list[JsonObject] = []
        for p in rec.parts:
            out += await client.results(p)
        await self.settle(rec, out)
        return out

    async def settle(self, rec: BatchRecord, results: list[JsonObject]) -> None:
        """Once per batch across every replica: the budget from the succeeded results' usage
        (the store's atomic claim), then this replica's metrics and one log line."""
        lock = self._locks.setdefault(rec.id, asyncio.Lock())
        async with lock:
            if rec.settled:
                return
            agent = self.gw.runtime.agents.get(rec.agent)
            discount = agent.spec.batch.discount if agent and agent.spec.batch else 0.5
            spec = self.gw.runtime.config.models.get(rec.model)
            prices = batch_prices(spec.prices_only() if spec else TokenPrices(), discount)
            ttl = agent.spec.cache.ttl if agent else None
            total = Decimal(0)
            tokens: dict[str, int] = {}
            kinds: dict[str, int] = {}
            for line in results:
                res = line.get("result") or {}
                kinds[str(res.get("type"))] = kinds.get(str(res.get("type")), 0) + 1
                if res.get("type") != "succeeded":
                    continue
                usage = usage_of((res.get("message") or {}).get("usage"), ttl)
                total += exact_cost(usage, prices)
                for k, n in usage.as_dict().items():
                    tokens[k] = tokens.get(k, 0) + n
            actual = micro_ceil(total)
            try:
                won = await self.store.settle_once(rec, actual)
            except (BudgetStoreUnavailable, BatchStoreUnavailable) as exc:
                self.gw.ledger.log({"event": "budget_settle_failed", "agent": rec.agent, "batch_id": rec.id, "error": str(exc)})
                return  # settled on a later read
            rec.settled, rec.cost_micro = True, actual
            self._locks.pop(rec.id, None)
            if not won:
                return  # another replica (or an earlier read here) settled it
            m = self.gw.ledger.metrics
            for kind, count in tokens.items():
                if count:
                    m.tokens.inc((rec.agent, rec.model, kind), count)
            if actual:
                m.cost.inc((rec.agent, rec.model), actual / 1e6)
            self.gw.ledger.log({"event": "batch_settled", "agent": rec.agent, "batch_id": rec.id, "model": rec.model,
                                "results": kinds, "tokens": tokens, "cost_usd": actual / 1e6,
                                "reserved_usd": rec.reserved / 1e6})

    async def follow(self, rec: BatchRecord, every_s: float) -> None:
        """Check the batch every `every_s` until it has ended and is settled (here or on another
        replica): the budget does not wait for a client to ask (ends with the process)."""
        while not rec.settled:
            await asyncio.sleep(every_s)
            try:
                if await self.store.settled(rec.id) is not None:
                    return
                if merge_view(rec, await self.states(rec), "")["processing_status"] == "ended":
                    await self.fetch_results(rec)
            except Exception as err:  # a follower must not die quietly: say why, try again next time
                self.gw.ledger.log({"event": "batch_follow_failed", "agent": rec.agent, "batch_id": rec.id, "error": str(err)})

    async def view(self, request: Request, rec: BatchRecord) -> JsonObject:
        view = merge_view(rec, await self.states(rec), self.results_url(request, rec.id))
        if view["processing_status"] == "ended" and not rec.settled:
            await self.fetch_results(rec)
        return view
