"""`deploy cost` for the batch route: each agent's spend through the Message Batches API (the
Admin API's service_tier=batch rows, at half price) read against its projection, which the
planner made at batch prices; a batch agent's spend at full price is flagged.

Hand-computed from list prices: Sonnet 4.6 $3 in / $15 out per Mtok, cache read 0.1x input,
1-h cache write 2x input, batch half of everything.
  batch row 1: 2M in $6 + 0.2M out $3 + 4M cache read $1.20 + 0.1M 1-h write $0.60 = $10.80 -> $5.40
  batch row 2: 1M in $3 + 0.1M out $1.50 = $4.50 -> $2.25
  standard row (the leak, full price): 0.1M in $0.30 + 0.01M out $0.15 = $0.45
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.ops.cost import attribute_usage, build_report
from agentdeploy.planner import Plan, build_plan, load_catalog, load_decision_file

from .admin_server import ADMIN_KEY, AdminServer
from .deploy_cli import deploy

ROOT = Path(__file__).resolve().parents[2]
BATCH_USD, REALTIME_USD = 5.40 + 2.25, 0.45


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "empty-home"))
    return load_catalog()


@pytest.fixture
def plan(catalog) -> Plan:
    return build_plan(load_decision_file(ROOT / "examples" / "service-business.yaml"), catalog).model_copy(update={"stack": "shop"})


def _row(tier: str, **tokens: int) -> SimpleNamespace:
    base = dict(uncached_input_tokens=0, cache_read_input_tokens=0, cache_write_5m_tokens=0, cache_write_1h_tokens=0,
                output_tokens=0, web_search_requests=0)
    return SimpleNamespace(model="claude-sonnet-4-6", service_tier=tier, api_key_id="k-md", **{**base, **tokens})


def test_attribution_splits_batch_spend(catalog) -> None:
    rows = [_row("batch", uncached_input_tokens=2_000_000, output_tokens=200_000, cache_read_input_tokens=4_000_000,
                 cache_write_1h_tokens=100_000),
            _row("batch", uncached_input_tokens=1_000_000, output_tokens=100_000),
            _row("standard", uncached_input_tokens=100_000, output_tokens=10_000)]
    spend = attribute_usage(rows, {"k-md": "marketing-drafts"}, catalog)
    assert float(spend.batch_by_agent["marketing-drafts"]) == pytest.approx(BATCH_USD, abs=1e-9)
    assert float(spend.by_agent["marketing-drafts"]) == pytest.approx(BATCH_USD + REALTIME_USD, abs=1e-9)


def test_batch_agent_against_its_projection(plan: Plan, catalog) -> None:
    assert plan.agent("marketing-drafts").route == "batch"
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)  # 15 days
    share = 15 / catalog.assumptions.days_per_month
    projected = plan.agent("marketing-drafts").cost.monthly_usd.launch * share

    leak = build_report(plan, catalog, "shop", since, until, {"marketing-drafts": (BATCH_USD + REALTIME_USD, "admin-api")}, {},
                        claude_batch={"marketing-drafts": BATCH_USD})
    md = next(a for a in leak.agents if a.agent == "marketing-drafts")
    assert md.claude_batch_usd == pytest.approx(BATCH_USD)
    assert md.projected_usd == pytest.approx(projected, abs=1e-6)
    assert md.drift_pct == pytest.approx(100 * ((BATCH_USD + REALTIME_USD) / md.projected_usd - 1), abs=0.01)
    assert "realtime-spend" in md.flags
    assert leak.claude_batch_usd == pytest.approx(BATCH_USD)

    clean = build_report(plan, catalog, "shop", since, until, {"marketing-drafts": (BATCH_USD, "admin-api")}, {},
                         claude_batch={"marketing-drafts": BATCH_USD})
    assert "realtime-spend" not in next(a for a in clean.agents if a.agent == "marketing-drafts").flags

    # the gateway's metric has no tier; a batch agent's is all batch (realtime is refused), an api agent's none
    metric = build_report(plan, catalog, "shop", since, until, {"marketing-drafts": (1.5, "gateway-metric"), "intake": (2.0, "gateway-metric")}, {})
    by = {a.agent: a for a in metric.agents}
    assert by["marketing-drafts"].claude_batch_usd == 1.5
    assert "realtime-spend" not in by["marketing-drafts"].flags
    assert by["intake"].claude_batch_usd == 0


def _batch_world(admin_api: AdminServer) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    at = (day + timedelta(minutes=1)).isoformat()
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=[{"id": "k-md", "name": "shop/marketing-drafts"}]).raise_for_status()
    httpx.post(f"{admin_api.url}/_emulator/usage", json=[
        {"at": at, "api_key_id": "k-md", "model": "claude-sonnet-4-6", "service_tier": "batch", "uncached_input_tokens": 2_000_000,
         "output_tokens": 200_000, "cache_read_input_tokens": 4_000_000, "cache_creation_1h": 100_000},
        {"at": at, "api_key_id": "k-md", "model": "claude-sonnet-4-6", "service_tier": "batch", "uncached_input_tokens": 1_000_000,
         "output_tokens": 100_000},
        {"at": at, "api_key_id": "k-md", "model": "claude-sonnet-4-6", "uncached_input_tokens": 100_000, "output_tokens": 10_000},
    ]).raise_for_status()


def test_deploy_cost_json_shows_batch_spend(aws, project: Path, admin_api: AdminServer) -> None:
    _batch_world(admin_api)
    proc = deploy("cost", "--stack", "shop", "--json", env={"ANTHROPIC_ADMIN_KEY": ADMIN_KEY, "ANTHROPIC_ADMIN_BASE_URL": admin_api.url})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    md = next(a for a in doc["agents"] if a["agent"] == "marketing-drafts")
    assert (md["route"], md["claude_source"]) == ("batch", "admin-api")
    assert md["claude_batch_usd"] == pytest.approx(BATCH_USD)
    assert md["claude_usd"] == pytest.approx(BATCH_USD + REALTIME_USD)
    assert "realtime-spend" in md["flags"]
    assert md["projected_usd"] > 0
    assert doc["claude_batch_usd"] == pytest.approx(BATCH_USD)
    # the billed cost report halves batch too: it agrees with the catalog-priced usage
    assert doc["claude_billed_usd"] == pytest.approx(BATCH_USD + REALTIME_USD)


def test_deploy_cost_table_says_batch_spend_against_projection(aws, project: Path, admin_api: AdminServer, monkeypatch) -> None:
    _batch_world(admin_api)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
    # One fixed period for both runs: with "until now" the projection (and its rounded drift) moves between them.
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    period = ["--since", day.date().isoformat(), "--until", (day + timedelta(days=1)).date().isoformat()]
    result = CliRunner().invoke(cli, ["cost", "--stack", "shop", "--admin-url", admin_api.url, *period])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    doc = json.loads(CliRunner().invoke(cli, ["cost", "--stack", "shop", "--admin-url", admin_api.url, "--json", *period]).output)
    md = next(a for a in doc["agents"] if a["agent"] == "marketing-drafts")
    drift = f"{100 * (BATCH_USD / md['projected_usd'] - 1):+.0f}%"
    assert f"batch route marketing-drafts: $7.65 through the Message Batches API against ${md['projected_usd']:,.2f} projected at batch prices ({drift})" in text
    assert "(realtime-spend)" in text
