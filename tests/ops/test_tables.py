"""The human tables fit an 80-column terminal (operations review, defect 16).

Run through the real `deploy` with COLUMNS=80 (what rich reads when stdout is not a terminal, and
what an 80-column terminal reports): no line is wider, and every figure is whole on one line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentdeploy.naming import METRIC_SPEND_USD

from . import cloud
from .admin_server import ADMIN_KEY, AdminServer
from .deploy_cli import deploy

NARROW = {"COLUMNS": "80"}


def _fits(text: str) -> None:
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, "\n".join(wide)


@pytest.fixture
def busy_router(aws, project: Path) -> None:
    cloud.fleet("router-ticket-router-fleet-0123456789", "router", "ticket-router", desired=2, instance_type="g6.xlarge")


def test_status_fits(busy_router, project: Path) -> None:
    proc = deploy("status", "--stack", "router", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    _fits(proc.stdout)
    row = next(line for line in proc.stdout.splitlines() if line.split()[:2] == ["ticket-router", "gpu"])
    assert row.split()[3:5] == ["2/2", "0/2"]  # desired/healthy, spot/on-demand: whole, in order
    assert "ticket-router: fleet router-ticket-router-fleet-0123456789 (g6.xlarge)" in proc.stdout


def test_reap_fits(busy_router, project: Path) -> None:
    proc = deploy("reap", "--stack", "router", "--dry-run", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    _fits(proc.stdout)
    row = next(line for line in proc.stdout.splitlines() if "ticket-router" in line and "keep" in line)
    assert row.split()[-5:] == ["2", "15", "min", "-", "keep"]  # desired, window, peak, action: whole
    assert "router-ticket-router-fleet-0123456789: up for 0 min only" in proc.stdout


def test_cost_fits(aws, gateway_shop: Path, admin_api: AdminServer) -> None:
    import httpx

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=[{"id": "k", "name": "shop"}]).raise_for_status()
    httpx.post(f"{admin_api.url}/_emulator/usage", json=[
        {"at": day.isoformat(), "api_key_id": "k", "model": "claude-haiku-4-5-20251001",
         "uncached_input_tokens": 1_234_000_000, "output_tokens": 0},  # $1,234.00
    ]).raise_for_status()
    cloud.put_metric(METRIC_SPEND_USD, "shop", "sales-brief", 1234.0, datetime.now(UTC) - timedelta(minutes=5))
    env = {**NARROW, "ANTHROPIC_ADMIN_KEY": ADMIN_KEY, "ANTHROPIC_ADMIN_BASE_URL": admin_api.url}
    proc = deploy("cost", "--stack", "shop", "--since", (day - timedelta(days=1)).date().isoformat(), env=env)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.split("budget: the share", 1)[0]
    _fits(table)
    row = next(line for line in table.splitlines() if line.split()[:1] == ["sales-brief"])
    assert row.split()[1] == "$1,234.00"  # claude spend, whole on its row
    assert "marketing-drafts" in table  # the longest agent name is not folded
    assert "Claude spend from gateway-metric: sales-brief" in proc.stdout
    assert "sales-brief (api): over-projection, over-budget" in proc.stdout


def test_catalog_show_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path))
    proc = deploy("catalog", "show", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    _fits(proc.stdout)
    assert any(line.split()[:2] == ["gpu", "g6.xlarge"] for line in proc.stdout.splitlines())  # ids whole
