"""A batch as the plan says it runs: pure decisions, no I/O.

Each request is checked like a realtime one (shape, max_tokens cap), its model pinned to the
plan's, the planned `cache_control` breakpoints (with the plan's TTL) placed on the shared prefix,
and the requests ordered so the ones sharing a prefix sit together (the first writes the
cache, the rest read it). The batch's worst case is priced at batch prices: every prompt token
a 1 h cache write, every allowed output token used, minus the Batch API's discount.

Money is exact: costs are summed as Decimals and rounded up to micro-dollars once.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from agentdeploy.serving.admission import estimate_prompt
from agentdeploy.serving.budget import MICRO
from agentdeploy.serving.cache_control import place_breakpoints
from agentdeploy.serving.pricing import Usage
from agentdeploy.serving.protocol.events import JsonObject
from agentdeploy.serving.protocol.shapes import RequestShapeError, check_request
from agentdeploy.serving.runtime import Agent
from agentdeploy.tokens import TOKEN_KINDS, TokenPrices

#: The API's rule for custom_id (Create a Message Batch reference, as of 2026-12).
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class BatchInputError(ValueError):
    """A batch the gateway will not submit: `path` names the request and field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Prepared:
    model: str
    #: Ready for the upstream, ordered so requests sharing a prefix are adjacent.
    requests: list[JsonObject]
    #: The batch's worst case at batch prices, micro-USD.
    worst_micro: int


def batch_prices(prices: TokenPrices, discount: float) -> TokenPrices:
    """Every token kind at the Batch API's price (the discount applies to cache tokens too)."""
    keep = Decimal(1) - Decimal(str(discount))
    return TokenPrices(**{k: float(Decimal(str(prices.of(k))) * keep) for k in TOKEN_KINDS})


def micro_ceil(usd: Decimal) -> int:
    """USD to micro-USD, rounded up (a budget never under-counts)."""
    return math.ceil(usd * MICRO)


def exact_cost(usage: Usage, prices: TokenPrices) -> Decimal:
    return sum((Decimal(str(prices.of(k))) * n for k, n in usage.as_dict().items()), Decimal(0))


def usage_of(message_usage: Any, ttl: str | None) -> Usage:
    """A result's Anthropic usage as the meter's `Usage` (cache writes split by TTL)."""
    u = message_usage if isinstance(message_usage, dict) else {}
    split = u.get("cache_creation") if isinstance(u.get("cache_creation"), dict) else None
    written = int(u.get("cache_creation_input_tokens") or 0)
    w5 = int(split.get("ephemeral_5m_input_tokens") or 0) if split else (0 if ttl == "1h" else written)
    w1 = int(split.get("ephemeral_1h_input_tokens") or 0) if split else (written if ttl == "1h" else 0)
    return Usage(input_tokens=int(u.get("input_tokens") or 0), output_tokens=int(u.get("output_tokens") or 0),
                 cache_write_5m=w5, cache_write_1h=w1, cache_read=int(u.get("cache_read_input_tokens") or 0),
                 reported=True, final=True)


def _max_tokens(agent: Agent, params: JsonObject, where: str) -> int:
    spec = agent.spec
    asked = params.get("max_tokens")
    if asked is None:
        return spec.max_tokens_default
    if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
        raise BatchInputError(f"{where}.max_tokens", "must be a positive integer")
    if asked > spec.max_tokens_cap:
        if spec.over_cap == "reject":
            raise BatchInputError(f"{where}.max_tokens", f"{asked} is above agent {agent.name!r}'s cap of {spec.max_tokens_cap}")
        return spec.max_tokens_cap
    return asked


def _prefix_key(params: JsonObject) -> str:
    """What a request shares with others in the cache: its tools and system prompt."""
    return hashlib.sha256(orjson.dumps([params.get("tools"), params.get("system")], option=orjson.OPT_SORT_KEYS)).hexdigest()


def prepare(agent: Agent, requests: Iterable[Any]) -> Prepared:
    """Check and prepare a batch for `agent` (a batch agent with a Claude chain head)."""
    head = agent.chain[0]
    if head.upstream.kind != "anthropic":
        raise BatchInputError("", f"agent {agent.name!r} is not served by Claude; the Message Batches API needs a Claude model")
    discount = agent.spec.batch.discount if agent.spec.batch else 0.0
    prices = batch_prices(head.prices, discount)
    cache = agent.spec.cache
    budget = agent.spec.budget
    out: list[tuple[str, int, JsonObject]] = []
    seen: set[str] = set()
    worst = Decimal(0)
    for i, req in enumerate(requests):
        where = f"requests.{i}"
        if not isinstance(req, dict):
            raise BatchInputError(where, "must be an object with custom_id and params")
        cid = req.get("custom_id")
        if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
            raise BatchInputError(f"{where}.custom_id", "must be 1-64 characters of letters, digits, '-' and '_'")
        if cid in seen:
            raise BatchInputError(f"{where}.custom_id", f"{cid!r} is used twice; custom_id must be unique in a batch")
        seen.add(cid)
        params = req.get("params")
        if not isinstance(params, dict):
            raise BatchInputError(f"{where}.params", "must be a Messages API request object")
        if params.get("stream"):
            raise BatchInputError(f"{where}.params.stream", "streaming is not supported inside a batch; remove it")
        try:
            priced = check_request("anthropic", {**params, "model": head.model})
        except RequestShapeError as err:
            raise BatchInputError(f"{where}.params.{err.path}" if err.path else f"{where}.params", str(err)) from None
        if budget is not None and budget.policy != "alert" and (priced.documents or priced.server_tools):
            raise BatchInputError(f"{where}.params", f"agent {agent.name!r} has a {budget.policy!r} budget and document blocks "
                                  "or server tools cannot be priced before the answer")
        max_tokens = _max_tokens(agent, params, f"{where}.params")
        body: JsonObject = {**params, "model": head.model, "max_tokens": max_tokens}
        if cache.enabled:
            body = place_breakpoints(body, cache.breakpoints, cache.ttl, head.min_cacheable)
        est = estimate_prompt(len(orjson.dumps(body)), priced)
        worst += Decimal(str(prices.worst_input)) * est + Decimal(str(prices.output)) * max_tokens
        out.append((_prefix_key(body), i, {"custom_id": cid, "params": body}))
    if not out:
        raise BatchInputError("requests", "at least one request is required")
    # Stable: requests sharing a prefix become adjacent, in the order of their first appearance.
    first: dict[str, int] = {}
    for key, i, _ in out:
        first.setdefault(key, i)
    out.sort(key=lambda t: (first[t[0]], t[1]))
    return Prepared(head.model, [r for _, _, r in out], micro_ceil(worst))
