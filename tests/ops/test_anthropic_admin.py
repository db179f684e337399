"""The Admin API client against the local emulator: buckets, pagination, cents, errors, retries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from agentdeploy.errors import InvalidInput, MissingDependency, OperationFailed
from agentdeploy.ops.anthropic_admin import AdminClient, AdminRetry, cents_to_usd

from .admin_server import ADMIN_KEY, AdminServer


def _client(server: AdminServer, sleeps: list[float] | None = None, key: str | None = None) -> AdminClient:
    retry = AdminRetry(attempts=3, sleep=(sleeps.append if sleeps is not None else lambda s: None), rand=lambda: 0.5)
    return AdminClient(api_key=key or server.key, base_url=server.url, retry=retry)


def _usage(server: AdminServer, rows: list[dict]) -> None:
    httpx.post(f"{server.url}/_emulator/usage", json=rows, timeout=5).raise_for_status()


def test_cents_are_exact_decimals() -> None:
    assert cents_to_usd("123.45") == Decimal("1.2345")
    assert cents_to_usd("0.0001") == Decimal("0.000001")
    with pytest.raises(OperationFailed):
        cents_to_usd("12,5")


def test_usage_follows_pagination_across_buckets(admin_api: AdminServer) -> None:
    _usage(
        admin_api,
        [
            {"at": "2026-09-02T10:00:00Z", "api_key_id": "k1", "model": "claude-haiku-4-5-20251001", "uncached_input_tokens": 100, "output_tokens": 7},
            {"at": "2026-09-02T11:00:00Z", "api_key_id": "k1", "model": "claude-haiku-4-5-20251001", "uncached_input_tokens": 50,
             "cache_creation_5m": 4, "cache_creation_1h": 3, "cache_read_input_tokens": 9},
            {"at": "2026-10-15T00:00:00Z", "api_key_id": "k2", "model": "claude-sonnet-4-6", "service_tier": "batch", "output_tokens": 11},
            {"at": "2026-11-10T23:59:59Z", "api_key_id": "k1", "model": "claude-sonnet-4-6", "output_tokens": 5},
            {"at": "2026-11-11T00:00:00Z", "api_key_id": "k1", "model": "claude-sonnet-4-6", "output_tokens": 1000},  # after the range
        ],
    )
    with _client(admin_api) as client:
        rows = client.usage(datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 11, tzinfo=UTC))
    asked = [r for r in admin_api.emulator.state.requests if r["path"].endswith("/messages")]
    assert len(asked) == 3  # 71 daily buckets at 31 per page
    assert ["page", asked[1]["query"][-1][1]] == asked[1]["query"][-1]
    first = [r for r in rows if r.starting_at == datetime(2026, 9, 2, tzinfo=UTC)]
    assert len(first) == 1
    row = first[0]
    assert (row.api_key_id, row.model, row.service_tier) == ("k1", "claude-haiku-4-5-20251001", "standard")
    assert (row.uncached_input_tokens, row.output_tokens) == (150, 7)
    assert (row.cache_write_5m_tokens, row.cache_write_1h_tokens, row.cache_read_input_tokens) == (4, 3, 9)
    assert sum(r.output_tokens for r in rows) == 7 + 11 + 5
    assert {r.service_tier for r in rows} == {"standard", "batch"}


def test_cost_report_sums_cents_by_workspace(admin_api: AdminServer) -> None:
    _usage(
        admin_api,
        [
            # haiku: 1M input ($1) + 0.2M output ($1) = $2.00 = 200 cents
            {"at": "2026-11-02T10:00:00Z", "api_key_id": "k1", "workspace_id": "wrkspc_a", "model": "claude-haiku-4-5",
             "uncached_input_tokens": 1_000_000, "output_tokens": 200_000},
            # sonnet batch: 1 output token at $15/Mtok x 0.5 = 0.00075 cents
            {"at": "2026-11-03T10:00:00Z", "api_key_id": "k2", "model": "claude-sonnet-4-6", "service_tier": "batch", "output_tokens": 1},
        ],
    )
    with _client(admin_api) as client:
        rows = client.cost(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC))
    by_ws = {r.workspace_id: r.amount_usd for r in rows}
    assert by_ws == {"wrkspc_a": Decimal("2"), None: Decimal("0.0000075")}
    raw = httpx.get(
        f"{admin_api.url}/v1/organizations/cost_report",
        params=[("starting_at", "2026-11-01T00:00:00Z"), ("ending_at", "2026-11-05T00:00:00Z"), ("group_by[]", "description")],
        headers={"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"},
    ).json()
    items = [i for b in raw["data"] for i in b["results"]]
    assert {i["description"] for i in items} >= {"Claude Haiku 4.5 Usage - Input Tokens", "Claude Haiku 4.5 Usage - Output Tokens"}
    assert all(isinstance(i["amount"], str) for i in items)
    assert [i["amount"] for i in items if i["token_type"] == "uncached_input_tokens"] == ["100"]


def test_api_keys_paginate(admin_api: AdminServer) -> None:
    keys = [{"id": f"apikey_{n:03}", "name": f"shop/agent-{n}"} for n in range(1, 1203)]
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=keys, timeout=10).raise_for_status()
    with _client(admin_api) as client:
        got = client.api_keys()
    assert len(got) == 1202
    assert got[-1].name == "shop/agent-1202"


def test_retries_honour_retry_after_then_succeed(admin_api: AdminServer) -> None:
    httpx.post(f"{admin_api.url}/_emulator/faults", json=[{"status": 429, "retry_after": 2, "times": 2}]).raise_for_status()
    sleeps: list[float] = []
    with _client(admin_api, sleeps) as client:
        assert client.api_keys() == []
    assert sleeps == [2.0, 2.0]


def test_retries_are_bounded(admin_api: AdminServer) -> None:
    httpx.post(f"{admin_api.url}/_emulator/faults", json=[{"status": 529, "times": -1}]).raise_for_status()
    sleeps: list[float] = []
    with _client(admin_api, sleeps) as client, pytest.raises(OperationFailed) as caught:
        client.api_keys()
    assert len(sleeps) == 2
    assert "gave up after 3 attempts" in caught.value.message


@pytest.mark.parametrize(
    ("fault", "error", "exit_code"),
    [({"status": 403}, MissingDependency, 4), ({"status": 404}, OperationFailed, 1)],
)
def test_errors_are_not_retried(admin_api: AdminServer, fault: dict, error: type, exit_code: int) -> None:
    httpx.post(f"{admin_api.url}/_emulator/faults", json=[fault]).raise_for_status()
    sleeps: list[float] = []
    with _client(admin_api, sleeps) as client, pytest.raises(error) as caught:
        client.api_keys()
    assert sleeps == []
    assert caught.value.exit_code == exit_code


def test_bad_key_is_a_credential_error_that_never_shows_the_key(admin_api: AdminServer) -> None:
    wrong = "sk-ant-admin01-WRONG-CANARY-123"
    with _client(admin_api, key=wrong) as client, pytest.raises(MissingDependency) as caught:
        client.usage(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    text = caught.value.render()
    assert "401" in text
    assert wrong not in text
    assert ADMIN_KEY not in text


def test_bad_parameters_are_invalid_input(admin_api: AdminServer) -> None:
    with _client(admin_api) as client, pytest.raises(InvalidInput):
        client.usage(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def test_missing_key_is_exit_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY", raising=False)
    with pytest.raises(MissingDependency) as caught:
        AdminClient()
    assert "ANTHROPIC_ADMIN_KEY" in caught.value.message


def test_unreachable_api_is_a_runtime_failure() -> None:
    from tests.support.moto import free_port

    retry = AdminRetry(attempts=2, sleep=lambda s: None)
    with AdminClient(api_key="k", base_url=f"http://127.0.0.1:{free_port()}", retry=retry) as client:
        with pytest.raises(OperationFailed) as caught:
            client.api_keys()
    assert "cannot reach" in caught.value.message
