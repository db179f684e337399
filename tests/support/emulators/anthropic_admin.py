"""A local emulator of Anthropic's Usage & Cost Admin API, for tests (no internet here).

Faithful where `deploy cost` depends on it:
- `GET /v1/organizations/usage_report/messages`: `starting_at` (required, snapped to the bucket
  start in UTC), `ending_at` (buckets that end at or before it), `bucket_width` 1m/1h/1d with the
  documented default/max bucket counts (60/1440, 24/168, 7/31), `group_by[]` over api_key_id,
  workspace_id, model, service_tier, context_window, inference_geo, filters `api_key_ids[]`,
  `workspace_ids[]`, `models[]`, `service_tiers[]`, `context_window[]`; per bucket
  `results[]` with uncached_input_tokens, cache_creation.{ephemeral_5m,ephemeral_1h}_input_tokens,
  cache_read_input_tokens, output_tokens, server_tool_use.web_search_requests, and every
  dimension (null unless grouped). Empty buckets come back with `results: []`.
- `GET /v1/organizations/cost_report`: daily buckets only, `group_by[]` workspace_id and/or
  description, `limit` 1-31 (default 7); `amount` is a decimal string in cents ("123.45" = $1.2345),
  `currency` "USD"; with `description`, items carry cost_type/model/service_tier/token_type.
- `GET /v1/organizations/api_keys`: `after_id` / `limit` pagination, `first_id`/`last_id`/`has_more`.
- Pagination: `has_more` + opaque `next_page`, passed back as `page`.
- Auth: `x-api-key` must be the admin key, `anthropic-version` must be present; errors have the
  API's shape (`{"type": "error", "error": {"type", "message"}}`).

Its own price table (list prices per Mtok, catalog-facts 1.2) computes the cost report, so tests
can check `deploy cost`'s catalog-based arithmetic against an independent figure.

Control API (tests only):
  POST   /_emulator/usage     [{"at": RFC3339, "api_key_id", "model", "service_tier", tokens...}]
  POST   /_emulator/api_keys  [{"id", "name", "workspace_id", "status"}]
  POST   /_emulator/faults    [{"status": 429, "retry_after": 1, "times": 1, "path": "cost_report"}]
  GET    /_emulator/requests  what was asked (path + query; headers are never recorded)
  DELETE /_emulator/state     forget everything

Run from the repository root: python -m tests.support.emulators.anthropic_admin --port 8766 --admin-key KEY
"""

from __future__ import annotations

import argparse
import base64
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

BUCKETS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
#: bucket width -> (default, max) buckets per page
BUCKET_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
USAGE_GROUPS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo")
COST_GROUPS = ("workspace_id", "description")
USAGE_FILTERS = {
    "api_key_ids": "api_key_id",
    "workspace_ids": "workspace_id",
    "models": "model",
    "service_tiers": "service_tier",
    "context_window": "context_window",
}
#: USD per million tokens: (input, output). Cache and batch follow the documented multipliers.
PRICES = {
    "claude-haiku-4-5": (Decimal(1), Decimal(5)),
    "claude-sonnet-4-5": (Decimal(3), Decimal(15)),
    "claude-sonnet-4-6": (Decimal(3), Decimal(15)),
    "claude-opus-4-5": (Decimal(5), Decimal(25)),
    "claude-opus-4-6": (Decimal(5), Decimal(25)),
    "claude-opus-4-7": (Decimal(5), Decimal(25)),
    "claude-opus-4-1": (Decimal(15), Decimal(75)),
}
TOKEN_TYPES = {
    # token_type in the cost report -> (record field, multiplier of the input price, or "output")
    "uncached_input_tokens": ("uncached_input_tokens", Decimal("1")),
    "cache_read_input_tokens": ("cache_read_input_tokens", Decimal("0.1")),
    "cache_creation.ephemeral_5m_input_tokens": ("cache_creation_5m", Decimal("1.25")),
    "cache_creation.ephemeral_1h_input_tokens": ("cache_creation_1h", Decimal("2")),
    "output_tokens": ("output_tokens", None),
}
TOKEN_LABEL = {
    "uncached_input_tokens": "Input Tokens",
    "cache_read_input_tokens": "Cache Read Input Tokens",
    "cache_creation.ephemeral_5m_input_tokens": "5m Cache Write Input Tokens",
    "cache_creation.ephemeral_1h_input_tokens": "1h Cache Write Input Tokens",
    "output_tokens": "Output Tokens",
}
WEB_SEARCH_CENTS = Decimal(1)  # $10 per 1,000 searches
_DATE_SUFFIX = re.compile(r"-\d{8}$")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _snap(value: datetime, width: str) -> datetime:
    value = value.astimezone(UTC)
    if width == "1d":
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    if width == "1h":
        return value.replace(minute=0, second=0, microsecond=0)
    return value.replace(second=0, microsecond=0)


def _price(model: str) -> tuple[Decimal, Decimal] | None:
    return PRICES.get(model) or PRICES.get(_DATE_SUFFIX.sub("", model))


def _family_name(model: str) -> str:
    base = _DATE_SUFFIX.sub("", model).removeprefix("claude-")
    parts = base.split("-")
    return "Claude " + parts[0].capitalize() + " " + ".".join(parts[1:])


@dataclass
class Record:
    at: datetime
    model: str
    api_key_id: str | None = None
    workspace_id: str | None = None
    service_tier: str = "standard"
    context_window: str = "0-200k"
    inference_geo: str = "global"
    uncached_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    output_tokens: int = 0
    web_search_requests: int = 0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        data = dict(obj)
        data["at"] = _parse_time(data["at"])
        return cls(**data)

    def token_cents(self, token_type: str) -> Decimal:
        price = _price(self.model)
        if price is None:
            return Decimal(0)
        attr, mult = TOKEN_TYPES[token_type]
        per_mtok = price[1] if mult is None else price[0] * mult
        if self.service_tier == "batch":
            per_mtok = per_mtok / 2
        return Decimal(getattr(self, attr)) * per_mtok / Decimal(1_000_000) * 100


@dataclass
class AdminState:
    admin_key: str
    records: list[Record] = field(default_factory=list)
    api_keys: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def take_fault(self, path: str) -> dict[str, Any] | None:
        for fault in self.faults:
            if fault.get("path") and fault["path"] not in path:
                continue
            times = int(fault.get("times", 1))
            if times != -1:
                fault["times"] = times - 1
                if fault["times"] <= 0:
                    self.faults.remove(fault)
            return fault
        return None


class BadRequest(Exception):
    pass


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _list_param(query: Any, name: str) -> list[str]:
    return list(query.getall(f"{name}[]", [])) + list(query.getall(name, []))


def _page_token(index: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"bucket": index}).encode()).decode()


def _page_index(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["bucket"])
    except (ValueError, KeyError, TypeError):
        raise BadRequest("page: invalid page token") from None


def _window(query: Any, state: AdminState, width: str, limit_default: int, limit_max: int) -> tuple[list[datetime], int, int]:
    """Bucket starts for the whole range, the page's first index, and the page size."""
    if "starting_at" not in query:
        raise BadRequest("starting_at: field required")
    try:
        start = _snap(_parse_time(query["starting_at"]), width)
        end = _parse_time(query["ending_at"]) if "ending_at" in query else None
    except ValueError as err:
        raise BadRequest(f"invalid timestamp: {err}") from None
    try:
        limit = int(query.get("limit", limit_default))
    except ValueError:
        raise BadRequest("limit: must be an integer") from None
    if not 1 <= limit <= limit_max:
        raise BadRequest(f"limit: must be between 1 and {limit_max} for bucket_width {width}")
    step = BUCKETS[width]
    horizon = end if end is not None else _snap(state.clock(), width) + step
    if end is not None and end <= start:
        raise BadRequest("ending_at must be after starting_at")
    starts: list[datetime] = []
    cursor = start
    while cursor + step <= horizon and len(starts) < 100_000:
        starts.append(cursor)
        cursor += step
    return starts, _page_index(query.get("page")), limit


def _page(starts: list[datetime], first: int, limit: int, width: str, bucket: Callable[[datetime, datetime], list]) -> dict:
    step = BUCKETS[width]
    chosen = starts[first : first + limit]
    data = [{"starting_at": _rfc3339(s), "ending_at": _rfc3339(s + step), "results": bucket(s, s + step)} for s in chosen]
    more = first + limit < len(starts)
    return {"data": data, "has_more": more, "next_page": _page_token(first + limit) if more else None}


def usage_results(records: list[Record], group_by: list[str]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[tuple(getattr(r, g) for g in group_by)].append(r)
    results = []
    for key, members in sorted(groups.items(), key=lambda kv: [str(k) for k in kv[0]]):
        row: dict[str, Any] = {dim: None for dim in (*USAGE_GROUPS, "account_id", "service_account_id")}
        row.update(dict(zip(group_by, key, strict=False)))
        row.update(
            {
                "uncached_input_tokens": sum(m.uncached_input_tokens for m in members),
                "cache_creation": {
                    "ephemeral_1h_input_tokens": sum(m.cache_creation_1h for m in members),
                    "ephemeral_5m_input_tokens": sum(m.cache_creation_5m for m in members),
                },
                "cache_read_input_tokens": sum(m.cache_read_input_tokens for m in members),
                "output_tokens": sum(m.output_tokens for m in members),
                "server_tool_use": {"web_search_requests": sum(m.web_search_requests for m in members)},
            }
        )
        results.append(row)
    return results


def cost_results(records: list[Record], group_by: list[str]) -> list[dict[str, Any]]:
    by_desc = "description" in group_by
    by_ws = "workspace_id" in group_by
    items: dict[tuple, Decimal] = defaultdict(Decimal)
    for r in records:
        ws = r.workspace_id if by_ws else None
        for token_type in TOKEN_TYPES:
            cents = r.token_cents(token_type)
            if not cents:
                continue
            key = (ws, "tokens", r.model, r.service_tier, token_type, r.context_window, r.inference_geo) if by_desc else (ws,)
            items[key] += cents
        if r.web_search_requests:
            key = (ws, "web_search", None, None, None, None, None) if by_desc else (ws,)
            items[key] += WEB_SEARCH_CENTS * r.web_search_requests
    results = []
    for key, cents in sorted(items.items(), key=lambda kv: [str(k) for k in kv[0]]):
        row: dict[str, Any] = {
            "amount": format(cents.normalize(), "f"),
            "currency": "USD",
            "workspace_id": key[0],
            "cost_type": None,
            "description": None,
            "model": None,
            "service_tier": None,
            "token_type": None,
            "context_window": None,
            "inference_geo": None,
        }
        if by_desc:
            _, cost_type, model, tier, token_type, window, geo = key
            desc = "Web Search Usage" if cost_type == "web_search" else f"{_family_name(model)} Usage - {TOKEN_LABEL[token_type]}"
            row.update(cost_type=cost_type, description=desc, model=model, service_tier=tier, token_type=token_type,
                       context_window=window, inference_geo=geo)
        results.append(row)
    return results


class AdminEmulator:
    def __init__(self, admin_key: str, clock: Callable[[], datetime] | None = None) -> None:
        self.state = AdminState(admin_key=admin_key)
        if clock is not None:
            self.state.clock = clock
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/organizations/usage_report/messages", self.usage_report)
        app.router.add_get("/v1/organizations/cost_report", self.cost_report)
        app.router.add_get("/v1/organizations/api_keys", self.list_api_keys)
        app.router.add_post("/_emulator/usage", self.add_usage)
        app.router.add_post("/_emulator/api_keys", self.add_api_keys)
        app.router.add_post("/_emulator/faults", self.add_faults)
        app.router.add_get("/_emulator/requests", self.list_requests)
        app.router.add_delete("/_emulator/state", self.reset)
        self.app = app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        self.state.requests.append({"path": request.path, "query": [[k, v] for k, v in request.query.items()]})
        if not request.headers.get("x-api-key"):
            return _error(401, "authentication_error", "x-api-key header is required")
        if request.headers["x-api-key"] != self.state.admin_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        fault = self.state.take_fault(request.path)
        if fault is not None:
            status = int(fault.get("status", 500))
            headers = {"retry-after": str(fault["retry_after"])} if "retry_after" in fault else None
            kinds = {403: "permission_error", 429: "rate_limit_error", 529: "overloaded_error"}
            return _error(status, kinds.get(status, "api_error"), fault.get("message", "emulated fault"), headers)
        try:
            return await handler(request)
        except BadRequest as err:
            return _error(400, "invalid_request_error", str(err))

    def _records(self, query: Any, filters: dict[str, str]) -> list[Record]:
        chosen = self.state.records
        for param, attr in filters.items():
            wanted = _list_param(query, param)
            if wanted:
                chosen = [r for r in chosen if getattr(r, attr) in wanted]
        return chosen

    async def usage_report(self, request: web.Request) -> web.Response:
        q = request.query
        width = q.get("bucket_width", "1d")
        if width not in BUCKETS:
            raise BadRequest("bucket_width: must be one of 1m, 1h, 1d")
        group_by = _list_param(q, "group_by")
        bad = [g for g in group_by if g not in USAGE_GROUPS]
        if bad:
            raise BadRequest(f"group_by: unsupported value(s) {bad}")
        starts, first, limit = _window(q, self.state, width, *BUCKET_LIMITS[width])
        records = self._records(q, USAGE_FILTERS)

        def bucket(lo: datetime, hi: datetime) -> list:
            return usage_results([r for r in records if lo <= r.at < hi], group_by)

        return web.json_response(_page(starts, first, limit, width, bucket))

    async def cost_report(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("bucket_width", "1d") != "1d":
            raise BadRequest("bucket_width: cost report supports only 1d")
        group_by = _list_param(q, "group_by")
        bad = [g for g in group_by if g not in COST_GROUPS]
        if bad:
            raise BadRequest(f"group_by: unsupported value(s) {bad}")
        starts, first, limit = _window(q, self.state, "1d", 7, 31)
        records = self.state.records

        def bucket(lo: datetime, hi: datetime) -> list:
            return cost_results([r for r in records if lo <= r.at < hi], group_by)

        return web.json_response(_page(starts, first, limit, "1d", bucket))

    async def list_api_keys(self, request: web.Request) -> web.Response:
        q = request.query
        keys = [k for k in self.state.api_keys if not q.get("status") or k["status"] == q["status"]]
        if q.get("workspace_id"):
            keys = [k for k in keys if k.get("workspace_id") == q["workspace_id"]]
        try:
            limit = int(q.get("limit", 20))
        except ValueError:
            raise BadRequest("limit: must be an integer") from None
        if not 1 <= limit <= 1000:
            raise BadRequest("limit: must be between 1 and 1000")
        start = 0
        if q.get("after_id"):
            ids = [k["id"] for k in keys]
            if q["after_id"] not in ids:
                raise BadRequest("after_id: unknown id")
            start = ids.index(q["after_id"]) + 1
        page = keys[start : start + limit]
        return web.json_response(
            {
                "data": page,
                "has_more": start + limit < len(keys),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def add_usage(self, request: web.Request) -> web.Response:
        rows = await request.json()
        self.state.records.extend(Record.from_json(r) for r in rows)
        return web.json_response({"records": len(self.state.records)})

    async def add_api_keys(self, request: web.Request) -> web.Response:
        for k in await request.json():
            self.state.api_keys.append(
                {
                    "type": "api_key",
                    "id": k["id"],
                    "name": k["name"],
                    "workspace_id": k.get("workspace_id"),
                    "status": k.get("status", "active"),
                    "created_at": k.get("created_at", "2026-01-01T00:00:00Z"),
                    "created_by": {"id": "user_emulator", "type": "user"},
                    "partial_key_hint": "sk-ant-api03-...AAAA",
                }
            )
        return web.json_response({"api_keys": len(self.state.api_keys)})

    async def add_faults(self, request: web.Request) -> web.Response:
        self.state.faults.extend(await request.json())
        return web.json_response({"faults": len(self.state.faults)})

    async def list_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.requests)

    async def reset(self, request: web.Request) -> web.Response:
        self.state.records.clear()
        self.state.api_keys.clear()
        self.state.faults.clear()
        self.state.requests.clear()
        return web.json_response({})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--admin-key", required=True, help="the admin key clients must send in x-api-key")
    parser.add_argument("--usage", help="JSON file with usage records to preload")
    args = parser.parse_args(argv)
    emu = AdminEmulator(args.admin_key)
    if args.usage:
        with open(args.usage) as fh:
            emu.state.records.extend(Record.from_json(r) for r in json.load(fh))
    web.run_app(emu.app, host=args.host, port=args.port, access_log=None,
                print=lambda *_: print(f"admin API emulator on http://{args.host}:{args.port}", flush=True))


if __name__ == "__main__":
    main()
