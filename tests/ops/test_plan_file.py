"""`deploy reap / status / cost` apply the stack's reviewed plan file, and refuse a stale one.

Each test edits a number inside the written plan (not its inputs), so only a command that
applies the file, rather than planning the decision file again, reports that number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import cloud
from .deploy_cli import assert_clean_error, deploy


def write_plan(project: Path, stack: str, *extra: str) -> Path:
    proc = deploy("plan", str(project / f"{stack}.yaml"), "--write", *extra)
    assert proc.returncode == 0, proc.stderr
    return Path(extra[0]) if extra else project / f"{stack}.plan.json"


def edit_agent(plan_file: Path, agent: str, edit: Any) -> None:
    doc = json.loads(plan_file.read_text())
    edit(next(a for a in doc["agents"] if a["name"] == agent))
    plan_file.write_text(json.dumps(doc, indent=2))


def set_budget(plan_file: Path, agent: str, usd: float) -> None:
    edit_agent(plan_file, agent, lambda a: a["budget"].update(monthly_usd=usd))


def edit_decision_file(project: Path, stack: str) -> None:
    path = project / f"{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    next(iter(doc["agents"].values()))["budget_usd_per_month"] = 4321
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def refresh_spot_prices(project: Path) -> None:
    """What `deploy catalog refresh-spot` leaves in catalog.d: every GPU's spot price moved."""
    from agentdeploy.planner import load_catalog

    folder = project.parent / "home" / "catalog.d"  # AGENTDEPLOY_HOME of the project fixture
    folder.mkdir(parents=True, exist_ok=True)
    gpus = load_catalog(include_home=False).gpu_instances
    doc = {"gpu_instances": {name: {"spot_usd_per_hour": round(g.on_demand_usd_per_hour * 0.31, 4),
                                    "source": "AWS EC2 DescribeSpotPriceHistory (test)", "as_of": "2026-12-01"}
                             for name, g in gpus.items()}}
    (folder / "spot-us-east-1.yaml").write_text(yaml.safe_dump(doc))


def test_reap_applies_the_plan_files_idle_window(aws, project: Path) -> None:
    plan_file = write_plan(project, "router")
    edit_agent(plan_file, "ticket-router", lambda a: a["fleet"].update(idle_minutes=42))
    cloud.fleet("router-tr", "router", "ticket-router", desired=1)
    proc = deploy("reap", "--stack", "router", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    (fleet,) = json.loads(proc.stdout)["fleets"]
    assert fleet["idle_minutes"] == 42


def test_status_applies_the_plan_file_the_stack_config_names(aws, project: Path) -> None:
    plan_file = write_plan(project, "shop", str(project / "reviewed" / "shop.json"))
    set_budget(plan_file, "intake", 777.0)
    config = project / "stacks" / "Pulumi.shop.yaml"
    config.write_text(config.read_text() + "  agentdeploy:planFile: reviewed/shop.json\n")
    proc = deploy("status", "--stack", "shop", "--json")
    assert proc.returncode == 0, proc.stderr
    by = {a["agent"]: a for a in json.loads(proc.stdout)["agents"]}
    assert by["intake"]["budget_monthly_usd"] == 777.0


def test_cost_applies_the_plan_file(aws, project: Path) -> None:
    set_budget(write_plan(project, "shop"), "intake", 555.0)
    proc = deploy("cost", "--stack", "shop", "--json")
    assert proc.returncode == 0, proc.stderr
    by = {a["agent"]: a for a in json.loads(proc.stdout)["agents"]}
    assert by["intake"]["budget_monthly_usd"] == 555.0


@pytest.mark.parametrize("command", [["reap", "--dry-run"], ["status"], ["cost"]])
def test_an_edited_decision_file_is_refused(aws, project: Path, command: list[str]) -> None:
    write_plan(project, "router")
    edit_decision_file(project, "router")
    cloud.fleet("router-tr", "router", "ticket-router", desired=1)
    decision = project / "router.yaml"
    proc = deploy(command[0], "--stack", "router", *command[1:])
    assert_clean_error(proc, 2, f"error: decision file {decision} changed since the plan was written: "
                                f"run `deploy plan {decision} --write` and review the diff")
    assert cloud.group("router-tr")["DesiredCapacity"] == 1


@pytest.mark.parametrize("command", [["reap", "--dry-run"], ["status"], ["cost"]])
def test_a_changed_catalog_is_refused(aws, project: Path, command: list[str]) -> None:
    write_plan(project, "router")
    refresh_spot_prices(project)
    proc = deploy(command[0], "--stack", "router", *command[1:])
    assert_clean_error(proc, 2, "error: catalog changed since the plan was written (spot price refresh?")
    assert "changed: gpu_instances" in proc.stderr


def test_a_stale_plan_answers_in_json_when_asked(aws, project: Path) -> None:
    write_plan(project, "shop")
    edit_decision_file(project, "shop")
    proc = deploy("status", "--stack", "shop", "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert (doc["error"], doc["exit_code"]) == ("StalePlan", 2)
    assert "changed since the plan was written" in doc["message"]
