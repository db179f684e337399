"""Client for Anthropic's Usage & Cost Admin API: usage by API key and model, cost in cents.

Why this and not the gateway's own counters alone: the provider's report is what the invoice is
built from, so `deploy cost` measures against it. The admin key comes from the environment
(`ANTHROPIC_ADMIN_KEY`), is sent only in the `x-api-key` header and never appears in a message,
log line or exception this module produces. Retries honour `retry-after` (429/529/5xx), are
bounded in attempts and in each wait; 4xx other than 429 is never retried.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from agentdeploy.errors import InvalidInput, MissingDependency, OperationFailed

DEFAULT_BASE_URL = "https://api.anthropic.com"
KEY_ENV = "ANTHROPIC_ADMIN_KEY"
BASE_URL_ENV = "ANTHROPIC_ADMIN_BASE_URL"
API_VERSION = "2023-06-01"
#: `deploy cost`'s way on without the key (a command with no other source passes its own hint).
MISSING_KEY_HINT = ("create an Admin key (sk-ant-admin...) in the Claude Console and export it, "
                    "or use --claude-source gateway to read the per-agent spend metric instead")
RETRY_STATUSES = {429, 500, 502, 503, 504, 529}
MAX_PAGES = 1000


@dataclass(frozen=True)
class UsageRow:
    """One usage result (a bucket x group), tokens split the way they are billed."""

    starting_at: datetime
    api_key_id: str | None
    workspace_id: str | None
    model: str | None
    service_tier: str | None
    uncached_input_tokens: int
    cache_read_input_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int
    web_search_requests: int


@dataclass(frozen=True)
class CostRow:
    starting_at: datetime
    workspace_id: str | None
    description: str | None
    amount_usd: Decimal


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    workspace_id: str | None
    status: str


@dataclass
class AdminRetry:
    attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    rand: Callable[[], float] = field(default=random.random)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cents_to_usd(amount: str) -> Decimal:
    """'123.45' (cents, as the API sends it) -> Decimal('1.2345') dollars, without float rounding."""
    try:
        return Decimal(amount) / 100
    except (InvalidOperation, TypeError):
        raise OperationFailed(f"Admin API returned an amount that is not a decimal string: {amount!r}") from None


class AdminClient:
    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: AdminRetry | None = None,
        timeout_s: float = 30.0,
        missing_hint: str = MISSING_KEY_HINT,
    ):
        """`missing_hint`: what the caller's command can do without the key (the default is
        `deploy cost`'s, which has the spend metric to fall back on)."""
        key = api_key or os.environ.get(KEY_ENV)
        if not key:
            raise MissingDependency(f"no Anthropic Admin API key: {KEY_ENV} is not set", hint=missing_hint)
        import httpx

        self._base = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self._http = httpx.Client(
            base_url=self._base,
            headers={"x-api-key": key, "anthropic-version": API_VERSION},
            timeout=timeout_s,
        )
        self._retry = retry or AdminRetry()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        import httpx

        policy = self._retry
        for attempt in range(policy.attempts):
            try:
                resp = self._http.get(path, params=tuple(params))
            except httpx.TransportError as err:
                if attempt + 1 < policy.attempts:
                    policy.sleep(policy.rand() * min(policy.cap_s, policy.base_s * 2**attempt))
                    continue
                raise OperationFailed(
                    f"cannot reach the Anthropic Admin API at {self._base} ({type(err).__name__})",
                    hint=f"check the network, or {BASE_URL_ENV} if you set one",
                ) from None
            if resp.status_code == 200:
                try:
                    return resp.json()
                except ValueError:
                    raise OperationFailed(f"Admin API {path} answered 200 with a body that is not JSON") from None
            if resp.status_code in RETRY_STATUSES and attempt + 1 < policy.attempts:
                policy.sleep(self._wait(resp, attempt))
                continue
            raise self._error(path, resp, attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, resp: Any, attempt: int) -> float:
        policy = self._retry
        header = resp.headers.get("retry-after")
        if header:
            try:
                return min(policy.cap_s, max(0.0, float(header)))
            except ValueError:
                pass
        return policy.rand() * min(policy.cap_s, policy.base_s * 2**attempt)

    def _error(self, path: str, resp: Any, attempts: int) -> Exception:
        try:
            err = resp.json().get("error", {})
            kind, message = err.get("type", ""), err.get("message", "")
        except ValueError:
            kind, message = "", resp.text[:200]
        what = f"Admin API {path}: HTTP {resp.status_code}" + (f" {kind}" if kind else "") + (f": {message}" if message else "")
        if resp.status_code == 401:
            return MissingDependency(what, hint=f"{KEY_ENV} was rejected; it must be an Admin key (sk-ant-admin...)")
        if resp.status_code == 403:
            return MissingDependency(what, hint="the key lacks permission for usage and cost reports; use an Admin key")
        if resp.status_code == 400:
            return InvalidInput(what)
        if resp.status_code in RETRY_STATUSES:
            return OperationFailed(f"{what} (gave up after {attempts} attempts)", hint="run again later")
        return OperationFailed(what)

    def _pages(self, path: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        page: str | None = None
        for _ in range(MAX_PAGES):
            body = self._get(path, params + ([("page", page)] if page else []))
            yield body
            if not body.get("has_more"):
                return
            page = body.get("next_page")
            if not page:
                raise OperationFailed(f"Admin API {path}: has_more without next_page")
        raise OperationFailed(f"Admin API {path}: more than {MAX_PAGES} pages; narrow --since")

    # -- endpoints ---------------------------------------------------------------------------

    def usage(
        self,
        starting_at: datetime,
        ending_at: datetime,
        group_by: tuple[str, ...] = ("api_key_id", "model", "service_tier"),
        api_key_ids: list[str] | None = None,
    ) -> list[UsageRow]:
        params = [
            ("starting_at", _rfc3339(starting_at)),
            ("ending_at", _rfc3339(ending_at)),
            ("bucket_width", "1d"),
            ("limit", "31"),
        ]
        params += [("group_by[]", g) for g in group_by]
        params += [("api_key_ids[]", k) for k in api_key_ids or []]
        rows: list[UsageRow] = []
        for body in self._pages("/v1/organizations/usage_report/messages", params):
            for bucket in body.get("data", []):
                start = _time(bucket["starting_at"])
                for r in bucket.get("results", []):
                    creation = r.get("cache_creation") or {}
                    rows.append(
                        UsageRow(
                            starting_at=start,
                            api_key_id=r.get("api_key_id"),
                            workspace_id=r.get("workspace_id"),
                            model=r.get("model"),
                            service_tier=r.get("service_tier"),
                            uncached_input_tokens=int(r.get("uncached_input_tokens", 0)),
                            cache_read_input_tokens=int(r.get("cache_read_input_tokens", 0)),
                            cache_write_5m_tokens=int(creation.get("ephemeral_5m_input_tokens", 0)),
                            cache_write_1h_tokens=int(creation.get("ephemeral_1h_input_tokens", 0)),
                            output_tokens=int(r.get("output_tokens", 0)),
                            web_search_requests=int((r.get("server_tool_use") or {}).get("web_search_requests", 0)),
                        )
                    )
        return rows

    def cost(self, starting_at: datetime, ending_at: datetime, group_by: tuple[str, ...] = ("workspace_id",)) -> list[CostRow]:
        params = [
            ("starting_at", _rfc3339(starting_at)),
            ("ending_at", _rfc3339(ending_at)),
            ("bucket_width", "1d"),
            ("limit", "31"),
        ] + [("group_by[]", g) for g in group_by]
        rows: list[CostRow] = []
        for body in self._pages("/v1/organizations/cost_report", params):
            for bucket in body.get("data", []):
                start = _time(bucket["starting_at"])
                for r in bucket.get("results", []):
                    if r.get("currency", "USD") != "USD":
                        raise OperationFailed(f"Admin API cost_report: unexpected currency {r.get('currency')!r}")
                    rows.append(CostRow(start, r.get("workspace_id"), r.get("description"), cents_to_usd(r["amount"])))
        return rows

    def api_keys(self) -> list[ApiKey]:
        keys: list[ApiKey] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            params = [("limit", "1000")] + ([("after_id", after)] if after else [])
            body = self._get("/v1/organizations/api_keys", params)
            keys += [ApiKey(k["id"], k.get("name", ""), k.get("workspace_id"), k.get("status", "")) for k in body.get("data", [])]
            if not body.get("has_more"):
                return keys
            after = body.get("last_id")
            if not after:
                raise OperationFailed("Admin API api_keys: has_more without last_id")
        raise OperationFailed(f"Admin API api_keys: more than {MAX_PAGES} pages")
