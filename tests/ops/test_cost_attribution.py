"""`deploy cost` with the ONE Anthropic key the stack provisions (operations review, defects 9, 15).

The gateway's per-agent SpendUSD metric (moto's CloudWatch) is the split per agent; the stack key's
usage in the Admin API emulator, priced with the catalog, is the check on it. A stack without GPU
agents read through the Admin API needs no AWS credentials.

Hand arithmetic (Haiku 4.5: $1 / Mtok in, $5 / Mtok out): 1,000,000 in + 300,000 out = $2.50.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agentdeploy.naming import METRIC_SPEND_USD

from . import cloud
from .admin_server import ADMIN_KEY, AdminServer
from .deploy_cli import DEPLOY, assert_clean_error, deploy

HAIKU = "claude-haiku-4-5-20251001"


def _usage(admin_api: AdminServer, keys: list[dict], rows: list[tuple[str, int, int]]) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=keys).raise_for_status()
    usage = [{"at": day.isoformat(), "api_key_id": key, "model": HAIKU, "uncached_input_tokens": tokens_in,
              "output_tokens": tokens_out} for key, tokens_in, tokens_out in rows]
    httpx.post(f"{admin_api.url}/_emulator/usage", json=usage).raise_for_status()


def _since() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def _admin_env(admin_api: AdminServer) -> dict[str, str]:
    return {"ANTHROPIC_ADMIN_KEY": ADMIN_KEY, "ANTHROPIC_ADMIN_BASE_URL": admin_api.url}


def test_the_gateway_splits_the_stack_keys_spend_and_the_admin_api_checks_it(aws, gateway_shop: Path, admin_api: AdminServer) -> None:
    _usage(admin_api, [{"id": "k-shop", "name": "shop"}, {"id": "k-else", "name": "elsewhere"}],
           [("k-shop", 1_000_000, 300_000), ("k-else", 5_000_000, 0)])
    now = datetime.now(UTC)
    cloud.put_metric(METRIC_SPEND_USD, "shop", "intake", 1.5, now - timedelta(minutes=30))
    cloud.put_metric(METRIC_SPEND_USD, "shop", "sales-brief", 1.0, now - timedelta(minutes=20))
    proc = deploy("cost", "--stack", "shop", "--json", "--since", _since(), env=_admin_env(admin_api))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by = {a["agent"]: a for a in doc["agents"]}
    assert (by["intake"]["claude_usd"], by["intake"]["claude_source"]) == (1.5, "gateway-metric")
    assert (by["sales-brief"]["claude_usd"], by["sales-brief"]["claude_source"]) == (1.0, "gateway-metric")
    assert doc["claude_stack_key_usd"] == pytest.approx(2.5)  # only the stack's key, not `elsewhere`
    assert not any("Anthropic key shop spent" in w for w in doc["warnings"])  # 2.50 attributed of 2.50
    assert not any("no Anthropic API key named" in w for w in doc["warnings"])


def test_spend_around_the_gateway_with_the_stack_key_is_reported(aws, gateway_shop: Path, admin_api: AdminServer) -> None:
    _usage(admin_api, [{"id": "k-shop", "name": "prod-shop-key"}], [("k-shop", 1_000_000, 300_000)])
    cloud.put_metric(METRIC_SPEND_USD, "shop", "intake", 1.5, datetime.now(UTC) - timedelta(minutes=30))
    proc = deploy("cost", "--stack", "shop", "--json", "--since", _since(), "--stack-key-name", "prod-{stack}-key",
                  env=_admin_env(admin_api))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["claude_stack_key_usd"] == pytest.approx(2.5)
    assert ("the Anthropic key prod-shop-key spent $2.50 (Admin API, catalog-priced), $1.00 more than the $1.50 the "
            "gateway attributed to agents; something calls Claude with the stack's key around the gateway") in doc["warnings"]
    table = deploy("cost", "--stack", "shop", "--since", _since(), "--stack-key-name", "prod-{stack}-key",
                   env=_admin_env(admin_api))
    assert "Claude spend of the stack's key (Admin API, catalog-priced): $2.50" in table.stdout


def test_no_key_of_the_stacks_name_is_said(aws, project: Path, admin_api: AdminServer) -> None:
    _usage(admin_api, [{"id": "k-x", "name": "unrelated"}], [("k-x", 1_000_000, 0)])
    doc = json.loads(deploy("cost", "--stack", "shop", "--json", "--since", _since(), env=_admin_env(admin_api)).stdout)
    assert doc["claude_stack_key_usd"] is None
    assert any(w.startswith("no Anthropic API key named shop (the stack's key)") for w in doc["warnings"])


def _without_aws(admin_api: AdminServer, tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "no-aws"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **_admin_env(admin_api), "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true"}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DEPLOY, *args], capture_output=True, text=True, timeout=120, env=env)


def test_a_claude_only_stack_needs_no_aws_credentials(project: Path, admin_api: AdminServer, tmp_path: Path) -> None:
    # Keys per agent: exact, and CloudWatch is never asked.
    _usage(admin_api, [{"id": "k-i", "name": "shop/intake"}, {"id": "k-s", "name": "shop/sales-brief"},
                       {"id": "k-m", "name": "shop/marketing-drafts"}], [("k-i", 1_000_000, 300_000)])
    env = _without_aws(admin_api, tmp_path)
    proc = _run(env, "cost", "--stack", "shop", "--json", "--since", _since())
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by = {a["agent"]: a for a in doc["agents"]}
    assert (by["intake"]["claude_usd"], by["intake"]["claude_source"]) == (2.5, "admin-api")
    assert not any("AWS" in w for w in doc["warnings"])


def test_a_claude_only_stack_without_aws_reports_the_stack_keys_total(gateway_shop: Path, admin_api: AdminServer,
                                                                       tmp_path: Path) -> None:
    _usage(admin_api, [{"id": "k-shop", "name": "shop"}], [("k-shop", 1_000_000, 300_000)])
    env = _without_aws(admin_api, tmp_path)
    proc = _run(env, "cost", "--stack", "shop", "--json", "--since", _since())
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["claude_stack_key_usd"] == pytest.approx(2.5)
    assert any("the gateway's per-agent metric (SpendUSD) was not read (no AWS credentials found)" in w for w in doc["warnings"])
    # A stack with GPU agents still needs AWS: its GPU spend cannot be read without it.
    assert_clean_error(_run(env, "cost", "--stack", "router", "--since", _since()), 4, "no AWS credentials found")
