"""`deploy simulate` as a user runs it: the JSON document's exact shape, clean usage errors, and
a table that reads on an 80-column terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentdeploy.cli.simulate_cmd import SCENARIO_NAMES
from agentdeploy.ops.simulate import SCENARIOS

from .deploy_cli import assert_clean_error, deploy

ROOT = Path(__file__).resolve().parents[2]
ROUTER = str(ROOT / "examples" / "high-volume-router.yaml")
SCENARIO_KEYS = {"name", "requests", "fallback_share", "fallback_reasons", "wake_s", "gpu_hours", "scale_events",
                 "cost_usd"}


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))


def test_json_document_has_the_issue_shape() -> None:
    proc = deploy("simulate", ROUTER, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"agents"}
    (agent,) = doc["agents"]
    assert set(agent) == {"name", "scenarios"} and agent["name"] == "ticket-router"
    assert [s["name"] for s in agent["scenarios"]] == list(SCENARIOS)
    for s in agent["scenarios"]:
        assert set(s) == SCENARIO_KEYS
        assert set(s["wake_s"]) == {"p50", "p95"}
        assert set(s["gpu_hours"]) == {"spot", "on_demand"}
        assert set(s["scale_events"]) == {"out", "in"}
        assert set(s["cost_usd"]) == {"simulated", "planned"}
        assert s["cost_usd"]["planned"] == 233.49
        assert sum(s["fallback_reasons"].values()) == round(s["fallback_share"] * s["requests"])
    burst = agent["scenarios"][1]
    assert burst["name"] == "cold-burst" and set(burst["fallback_reasons"]) == {"cold_start"}
    assert 360 <= burst["wake_s"]["p50"] <= burst["wake_s"]["p95"] <= 420
    assert burst["scale_events"] == {"out": 8, "in": 8}
    assert agent["scenarios"][0]["wake_s"] == {"p50": None, "p95": None}  # warm all day: no wake episode


def test_same_seed_same_document() -> None:
    args = ("simulate", ROUTER, "--scenario", "declared", "--scenario", "spot-wave", "--seed", "3", "--json")
    first, second = deploy(*args), deploy(*args)
    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert [s["name"] for s in json.loads(first.stdout)["agents"][0]["scenarios"]] == ["declared", "spot-wave"]


def test_bad_scenario_is_a_usage_error_in_json_too() -> None:
    proc = deploy("simulate", ROUTER, "--scenario", "cold-brust", "--json")
    assert_clean_error(proc, 2, "'cold-brust' is not one of")
    doc = json.loads(proc.stdout)
    assert doc["error"] == "UsageError" and doc["exit_code"] == 2
    assert "'cold-burst'" in doc["message"]  # the valid names are listed


def test_days_out_of_range_is_a_usage_error() -> None:
    assert_clean_error(deploy("simulate", ROUTER, "--days", "0"), 2, "--days")


def test_missing_decision_file_is_invalid_input(tmp_path: Path) -> None:
    proc = deploy("simulate", str(tmp_path / "nope.yaml"), "--json")
    assert_clean_error(proc, 2, "no such decision file")
    assert json.loads(proc.stdout)["error"] == "InvalidInput"


def test_a_plan_without_gpu_agents_has_nothing_to_simulate() -> None:
    proc = deploy("simulate", str(ROOT / "examples" / "service-business.yaml"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"agents": []}


def test_table_fits_80_columns() -> None:
    proc = deploy("simulate", ROUTER, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    wide = [line for line in proc.stdout.splitlines() if len(line) > 80]
    assert not wide, "\n".join(wide)
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()[:1] in ([n] for n in SCENARIOS)}
    assert set(rows) == set(SCENARIOS)  # every scenario's name whole on its row
    assert rows["declared"][2] == "0.00%" and rows["declared"][-1] == "$233.47"
    assert "ok cold-burst: served by the fleet within 420 s: slowest wake" in proc.stdout
    assert "FAILS" not in proc.stdout


def test_cli_names_match_the_package() -> None:
    assert SCENARIO_NAMES == SCENARIOS


def test_reads_the_reviewed_plan_file_and_refuses_a_stale_one(tmp_path: Path) -> None:
    """Like `deploy up`: the plan file beside the decision file is what gets simulated, and one
    whose decision file changed since is refused (exit 2) rather than silently re-planned."""
    decision = tmp_path / "router.yaml"
    decision.write_text((ROOT / "examples" / "high-volume-router.yaml").read_text())
    assert deploy("plan", str(decision), "--write").returncode == 0
    fresh = deploy("simulate", str(decision), "--scenario", "declared", "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["agents"][0]["scenarios"][0]["cost_usd"]["planned"] == 233.49
    decision.write_text(decision.read_text().replace("conversations_per_month: 600000", "conversations_per_month: 900000"))
    assert_clean_error(deploy("simulate", str(decision), "--json"), 2, "changed since the plan was written")
