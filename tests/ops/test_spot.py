"""Spot prices: moto -> override file -> load_catalog() -> the plan's GPU cost."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.ops.spot import SpotQuote, override_document, summarise, write_override
from agentdeploy.planner import build_plan, load_catalog, load_decision_file

ROOT = Path(__file__).resolve().parents[2]


def _row(itype: str, zone: str, price: str, hour: int) -> dict:
    return {
        "InstanceType": itype,
        "AvailabilityZone": zone,
        "SpotPrice": price,
        "Timestamp": datetime(2026, 11, 23, hour, tzinfo=UTC),
    }


def test_summarise_takes_latest_per_zone_then_median() -> None:
    history = [
        _row("g5.xlarge", "a", "0.90", 1),  # superseded by the 0.30 below
        _row("g5.xlarge", "a", "0.30", 5),
        _row("g5.xlarge", "b", "0.40", 2),
        _row("g5.xlarge", "c", "0.50", 3),
        _row("g6.xlarge", "a", "0.25", 1),
        _row("g6.xlarge", "b", "0.35", 1),
    ]
    quotes = summarise(history)
    assert quotes["g5.xlarge"] == SpotQuote("g5.xlarge", 0.40, 0.30, 0.50, 3)
    assert quotes["g6.xlarge"].median == pytest.approx(0.30)
    assert quotes["g6.xlarge"].zones == 2


def test_override_keeps_provenance_and_flags_odd_quotes() -> None:
    cat = load_catalog(include_home=False)
    quotes = {
        "g5.xlarge": SpotQuote("g5.xlarge", 0.35, 0.3, 0.4, 3),
        "g6.xlarge": SpotQuote("g6.xlarge", 2.0, 2.0, 2.0, 1),  # above on-demand 0.8048
    }
    doc, warnings = override_document(quotes, cat.gpu_instances, "us-east-1", date(2026, 11, 23))
    entry = doc["gpu_instances"]["g5.xlarge"]
    assert entry["spot_usd_per_hour"] == 0.35
    assert entry["as_of"] == "2026-11-23"
    assert "DescribeSpotPriceHistory" in entry["source"]
    assert "us-east-1" in entry["source"]
    assert cat.gpu_instances["g5.xlarge"].source in entry["field_sources"]["on_demand_usd_per_hour"]
    assert any("g6.xlarge" in w and "above on-demand" in w and "not written" in w for w in warnings)
    assert "g6.xlarge" not in doc["gpu_instances"]  # an outlier is never written unless accepted
    assert any("no spot price" in w and "p5.4xlarge" in w for w in warnings)


def test_an_outlier_keeps_the_previous_refreshs_figure() -> None:
    cat = load_catalog(include_home=False)
    earlier = {"spot_usd_per_hour": 0.31, "source": "earlier refresh", "as_of": "2026-11-01"}
    quotes = {"g6.xlarge": SpotQuote("g6.xlarge", 0.00001, 0.00001, 0.00001, 6)}  # under 5% of on-demand
    doc, warnings = override_document(quotes, cat.gpu_instances, "us-east-1", date(2026, 11, 23),
                                      previous={"g6.xlarge": earlier})
    assert doc["gpu_instances"]["g6.xlarge"] == earlier
    assert any("under 5% of on-demand" in w and "the previous refresh's figure kept" in w for w in warnings)
    accepted, warnings = override_document(quotes, cat.gpu_instances, "us-east-1", date(2026, 11, 23),
                                           accept_outliers=True, previous={"g6.xlarge": earlier})
    assert accepted["gpu_instances"]["g6.xlarge"]["spot_usd_per_hour"] == 0.00001
    assert any("written as asked" in w for w in warnings)


def test_outliers_are_not_written_unless_accepted(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto quotes $0.00001/h for every type: implausible, so nothing is written and the plan keeps its prices."""
    import json

    from .deploy_cli import assert_clean_error, deploy

    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    proc = deploy("catalog", "refresh-spot", "--region", "us-east-1")
    assert_clean_error(proc, 1, "every spot quote from us-east-1 looks implausible; nothing written")
    assert "under 5% of on-demand" in proc.stderr
    assert "--accept-outliers" in proc.stderr
    assert not (tmp_path / "home" / "catalog.d" / "spot-us-east-1.yaml").exists()
    builtin = load_catalog(include_home=False).gpu_instances["g6.xlarge"].spot_usd_per_hour
    assert load_catalog().gpu_instances["g6.xlarge"].spot_usd_per_hour == builtin
    as_json = deploy("catalog", "refresh-spot", "--region", "us-east-1", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"] == "OperationFailed"
    accepted = deploy("catalog", "refresh-spot", "--region", "us-east-1", "--accept-outliers", "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["gpu_instances"]["g6.xlarge"]["spot_usd_per_hour"] == pytest.approx(0.00001)


def test_refresh_round_trips_into_the_planner(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    spec = load_decision_file(ROOT / "examples" / "high-volume-router.yaml")
    before = build_plan(spec, load_catalog())
    router_before = before.agent("ticket-router")
    assert router_before.fleet is not None

    # moto's quotes are outliers (see test_outliers_are_not_written_unless_accepted): accepted here.
    result = CliRunner().invoke(cli, ["catalog", "refresh-spot", "--region", "us-east-1", "--accept-outliers"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "home" / "catalog.d" / "spot-us-east-1.yaml"
    written = yaml.safe_load(path.read_text())["gpu_instances"]
    # moto's synthetic spot price is 0.00001 in every zone.
    assert written["g6.xlarge"]["spot_usd_per_hour"] == pytest.approx(0.00001)
    assert written["g6.xlarge"]["as_of"] == datetime.now(UTC).date().isoformat()

    cat = load_catalog()
    assert str(path) in cat.applied_overrides
    assert cat.gpu_instances["g6.xlarge"].spot_usd_per_hour == pytest.approx(0.00001)
    assert cat.gpu_instances["g6.xlarge"].on_demand_usd_per_hour == pytest.approx(0.8048)

    after = build_plan(spec, cat)
    router = after.agent("ticket-router")
    assert router.fleet is not None
    assert router.fleet.hourly_usd_spot == pytest.approx(cat.gpu_instances[router.fleet.instance_type].spot_usd_per_hour)
    assert router.cost.items["launch"].gpu_spot < router_before.cost.items["launch"].gpu_spot


def test_catalog_show_lists_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["catalog", "show"])
    assert result.exit_code == 0, result.output
    assert "g5.xlarge" in result.output
    assert "claude-haiku-4-5" in result.output
    assert "as_of" in result.output
    as_json = CliRunner().invoke(cli, ["catalog", "show", "--json"])
    import json

    data = json.loads(as_json.output)
    assert data["gpu_instances"]["g5.xlarge"]["source"]


def test_refresh_without_credentials_is_exit_4(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess

    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc = subprocess.run(["deploy", "catalog", "refresh-spot"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 4
    assert "no AWS credentials found" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "catalog.d").exists()


def test_refresh_keeps_regions_apart(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two regions' spot files live side by side; each plan reads only its own region's."""
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    assert CliRunner().invoke(cli, ["catalog", "refresh-spot", "--region", "us-west-2", "--accept-outliers"]).exit_code == 0
    result = CliRunner().invoke(cli, ["catalog", "refresh-spot", "--region", "us-east-1", "--json", "--accept-outliers"])
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.output)
    assert doc["path"].endswith("spot-us-east-1.yaml")
    east = load_catalog(region="us-east-1").applied_overrides
    assert [Path(p).name for p in east] == ["spot-us-east-1.yaml"]


def _spot_file(home: Path, region: str, price: float) -> None:
    cat = load_catalog(include_home=False)
    doc, _ = override_document({"g5.xlarge": SpotQuote("g5.xlarge", price, price, price, 1)}, cat.gpu_instances,
                               region, date(2026, 11, 23), accept_outliers=True)
    write_override(doc, region, home)


def _was(output: str, itype: str) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.startswith(itype)]
    return line.split("(was ", 1)[1]


def test_refresh_compares_with_the_same_region_only(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(home))
    builtin = load_catalog(include_home=False).gpu_instances["g5.xlarge"].spot_usd_per_hour
    _spot_file(home, "us-west-2", 7.77)  # another region's figure must not be the "was"
    result = CliRunner().invoke(cli, ["catalog", "refresh-spot", "--region", "us-east-1", "--accept-outliers"])
    assert result.exit_code == 0, result.output
    assert _was(result.output, "g5.xlarge") == f"${builtin:g}/h)"
    _spot_file(home, "us-east-1", 0.42)  # this region's previous refresh is
    result = CliRunner().invoke(cli, ["catalog", "refresh-spot", "--region", "us-east-1", "--accept-outliers"])
    assert result.exit_code == 0, result.output
    assert _was(result.output, "g5.xlarge") == "$0.42/h)"
