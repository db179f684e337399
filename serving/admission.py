"""Admission: which agent a request is for, how many tokens it may ask for, and whether the
agent's budget can hold its worst case.

All of it runs before any upstream is contacted. The budget is held by reservation: the
request's worst-case cost over every upstream it may reach is reserved at admission and settled
to what the answer actually cost once it is done, so concurrent requests cannot overshoot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from agentdeploy.naming import SHARED_KEY
from agentdeploy.serving.auth import OPERATOR, presented_key
from agentdeploy.serving.budget import BudgetStore, BudgetStoreUnavailable, to_micro, window_key
from agentdeploy.serving.config import BudgetSpec
from agentdeploy.serving.deliver import Ledger, RequestContext
from agentdeploy.serving.http1 import Request, Response
from agentdeploy.serving.pricing import worst_case_usd
from agentdeploy.serving.protocol.events import ApiKind, JsonObject
from agentdeploy.serving.protocol.shapes import Priced, RequestShapeError, check_request
from agentdeploy.serving.replies import H_ERROR, Replies
from agentdeploy.serving.runtime import Agent, Runtime, Step

log = logging.getLogger("agentdeploy.gateway")


#: Worst-case input tokens of one image block. Claude bills an image (width x height) / 750
#: tokens after scaling it down to its model's limit: about 1,600 at a 1568 px long edge
#: (docs.claude.com/en/docs/vision, as of 2026-12), about 4,800 for models that read up to
#: 2576 px. The larger figure, so no Claude model can bill more than is reserved.
IMAGE_TOKENS_WORST = 4800


class Refused(Exception):
    """The request is answered here, with this error, and goes no further."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers, self.param = status, kind, message, headers, param


@dataclass(frozen=True, slots=True)
class BudgetHold:
    """A reservation against an agent's budget, to settle when the answer is done."""

    agent: Agent
    budget: BudgetSpec
    key: str
    #: Micro-USD reserved (the request's worst case).
    reserved: int


@dataclass(slots=True)
class Admitted:
    ctx: RequestContext
    #: The chain to walk: the agent's own, or its cheaper degrade chain once the budget is short.
    chain: list[Step]
    hold: BudgetHold | None


def owner_of(rt: Runtime, headers: Mapping[str, str]) -> str | None:
    """The agent the presented key belongs to, SHARED_KEY for a shared key, None if it matches
    nothing (an operator key included: it calls no agent)."""
    owner = rt.keys.lookup(presented_key(headers))
    return None if owner == OPERATOR else owner


def is_operator(rt: Runtime, request: Request) -> bool:
    """Whether the request presents an operator key (it may read /metrics)."""
    return rt.keys.lookup(presented_key(request.headers)) == OPERATOR


def _body(raw: bytes) -> JsonObject:
    try:
        body = orjson.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused(400, "invalid_request_error", "request body must be a JSON object")
    return body


def _agent(rt: Runtime, owner: str, body: JsonObject) -> Agent:
    """A per-agent key selects its agent; a shared key selects the agent named in `model`."""
    wanted = body.get("model")
    if owner == SHARED_KEY:
        agent = rt.agents.get(wanted) if isinstance(wanted, str) else None
        if agent is None:
            raise Refused(400, "invalid_request_error", f"model must name an agent; known agents: {', '.join(sorted(rt.agents))}")
        return agent
    if isinstance(wanted, str) and wanted in rt.agents and wanted != owner:
        raise Refused(403, "permission_error", f"this key is not valid for agent {wanted!r}")
    return rt.agents[owner]


def _shape(protocol: ApiKind, body: JsonObject) -> Priced:
    try:
        return check_request(protocol, body)
    except RequestShapeError as err:
        raise Refused(400, "invalid_request_error", str(err), param=err.path or None) from None


def _not_batch(agent: Agent) -> None:
    """A batch-route agent's budget is sized at batch prices: a realtime request would bill it
    at full price, so it is refused, naming where its requests go (serving/batch/)."""
    if agent.spec.batch is not None:
        raise Refused(400, "invalid_request_error",
                      f"agent {agent.name!r} runs on the Message Batches API (batch prices): submit its requests to "
                      "POST /v1/messages/batches (Anthropic shape) or POST /v1/files + POST /v1/batches (OpenAI shape), "
                      "or with `deploy batch submit FILE.jsonl --agent " + agent.name + "`",
                      {H_ERROR: "batch_only"})


def _unpriceable(agent: Agent, priced: Priced) -> None:
    """A budget that must hold cannot admit what it cannot price before the answer: a PDF's
    pages and a server tool's per-use fee have no worst case in the request's bytes."""
    budget = agent.spec.budget
    if budget is None or budget.policy == "alert" or not (priced.documents or priced.server_tools):
        return
    what = "document blocks" if priced.documents else "server tools (billed per use)"
    raise Refused(400, "invalid_request_error",
                  f"agent {agent.name!r} has a {budget.policy!r} budget and {what} cannot be priced before the answer; "
                  f"send the content as text or images, or give the agent an alert-only budget")


def estimate_prompt(body_bytes: int, priced: Priced) -> int:
    """Prompt tokens to reserve for: about 4 bytes a token of the body, plus each image's
    worst case (an image URL is a few bytes and bills thousands of tokens)."""
    return (body_bytes // 4 + 1 if body_bytes else 1000) + priced.images * IMAGE_TOKENS_WORST


def _max_tokens(agent: Agent, body: JsonObject) -> int:
    """The agent's default when none is asked for; above its cap, clamped or refused."""
    spec = agent.spec
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    if requested is None:
        return spec.max_tokens_default
    if not isinstance(requested, int) or requested < 1:
        raise Refused(400, "invalid_request_error", "max_tokens must be a positive integer")
    if requested > spec.max_tokens_cap:
        if spec.over_cap == "reject":
            raise Refused(400, "invalid_request_error", f"max_tokens {requested} is above agent {agent.name!r}'s cap of {spec.max_tokens_cap}; send at most {spec.max_tokens_cap}")
        return spec.max_tokens_cap
    return requested


class Admission:
    def __init__(self, store: BudgetStore, ledger: Ledger, replies: Replies) -> None:
        self.store = store
        self.ledger = ledger
        self.metrics = ledger.metrics
        self.replies = replies
        self._thresholds_seen: dict[str, int] = {}

    async def admit(self, rt: Runtime, request: Request, protocol: ApiKind, owner: str, t_in: float) -> Admitted | Response:
        """The request's context, chain and budget hold; or the error that answers it."""
        name = owner
        try:
            body = _body(await request.read())
            priced = _shape(protocol, body)
            agent = _agent(rt, owner, body)
            name = agent.name
            _not_batch(agent)
            max_tokens = _max_tokens(agent, body)
            _unpriceable(agent, priced)
            est_prompt = estimate_prompt(request.content_length, priced)
            chain, hold, degraded = await self._reserve(rt, agent, protocol, est_prompt, max_tokens)
        except Refused as no:
            self.ledger.refused(name, protocol, no.status, no.message, t_in)
            return self.replies.error(protocol, no.status, no.kind, no.message, no.headers, no.param)
        ctx = RequestContext(request, protocol, body, agent, max_tokens, est_prompt, t_in, bool(body.get("stream")),
                             ["budget:degraded"] if degraded else [])
        return Admitted(ctx, chain, hold)

    async def _reserve(self, rt: Runtime, agent: Agent, protocol: ApiKind, est_prompt: int,
                       max_tokens: int) -> tuple[list[Step], BudgetHold | None, bool]:
        """Reserve the worst case over every upstream this request may reach: (chain, hold, degraded)."""
        budget = agent.spec.budget
        if budget is None:
            return agent.chain, None, False
        chain, degraded = agent.chain, False
        key = window_key(rt.config.budget_store.key_prefix, rt.config.stack, agent.name)
        reserved = to_micro(worst_case_usd(est_prompt, max_tokens, agent.worst))
        try:
            ok = await self.store.reserve(key, reserved, agent.budget_limit_micro)
            if not ok and budget.policy == "degrade" and agent.degrade_chain:
                reserved = to_micro(worst_case_usd(est_prompt, max_tokens, agent.degrade_worst))
                ok = await self.store.reserve(key, reserved, agent.budget_limit_micro)
                chain, degraded = agent.degrade_chain, ok
                if ok:
                    self.metrics.budget_rejections.inc((agent.name, "degraded"))
        except BudgetStoreUnavailable as exc:
            # A budget that cannot be checked cannot hold: block and degrade fail closed; an
            # alert-only budget never blocks, so it admits unmetered and says so.
            self.ledger.log({"event": "budget_store_unavailable", "agent": agent.name, "policy": budget.policy, "error": str(exc)})
            self.metrics.budget_rejections.inc((agent.name, "store_unavailable"))
            if budget.policy != "alert":
                raise Refused(503, "overloaded_error" if protocol == "anthropic" else "budget_store_unavailable",
                              f"agent {agent.name!r}'s budget cannot be checked (budget store unreachable); retry shortly",
                              {H_ERROR: "budget_store_unavailable", "retry-after": "1"}) from None
            return chain, None, degraded
        if not ok:
            self.metrics.budget_rejections.inc((agent.name, "blocked"))
            raise Refused(429, "budget_exceeded", f"agent {agent.name!r} has reached its budget of ${budget.monthly_usd:g} for this month",
                          {H_ERROR: "budget_exceeded"})
        return chain, BudgetHold(agent, budget, key, reserved), degraded

    async def settle(self, hold: BudgetHold, actual: int) -> None:
        """Turn the reservation into what the answer cost; log each budget threshold once crossed."""
        try:
            await self.store.settle(hold.key, hold.reserved, actual)
            committed = await self.store.committed(hold.key)
        except BudgetStoreUnavailable as exc:
            # The reservation stays counted (over-, never under-counting); say what was lost.
            self.ledger.log({"event": "budget_settle_failed", "agent": hold.agent.name, "reserved_usd": hold.reserved / 1e6,
                             "actual_usd": actual / 1e6, "error": str(exc)})
            return
        budget = hold.budget
        used_pct = 100.0 * committed / (budget.monthly_usd * 1e6)
        crossed = [t for t in budget.thresholds_pct if used_pct >= t]
        if crossed and max(crossed) > self._thresholds_seen.get(hold.key, 0):
            self._thresholds_seen[hold.key] = max(crossed)
            log.warning(orjson.dumps({"event": "budget_threshold", "agent": hold.agent.name, "threshold_pct": max(crossed),
                                      "used_pct": round(used_pct, 1), "policy": budget.policy}).decode())
