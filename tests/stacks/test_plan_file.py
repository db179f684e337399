"""The Pulumi program applies the reviewed plan file, and refuses one whose inputs changed."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
import yaml

from agentdeploy.planner import build_plan, load_decision_file, spec_catalog
from agentdeploy.planner.planfile import default_plan_path, write_plan_file
from tests.stacks.harness import mixed_decision_file, run_main

ASG = "aws:autoscaling/group:Group"
SECRET_KEYS = ["agentdeploy:anthropicApiKey"]


def _config(decision: Path, **extra: str) -> dict[str, str]:
    return {"agentdeploy:decisionFile": str(decision), "aws:region": "us-east-1",
            "agentdeploy:anthropicApiKey": "sk-ant-test-key-000000", **extra}


@pytest.fixture
def decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))  # no catalog.d of this machine
    return mixed_decision_file(tmp_path)


def write_plan(decision: Path, path: Path | None = None) -> Path:
    spec = load_decision_file(decision)
    catalog = spec_catalog(spec)
    path = path or default_plan_path(decision)
    write_plan_file(path, build_plan(spec, catalog), decision, catalog)
    return path


def set_max_replicas(plan_file: Path, agent: str, value: int) -> None:
    """Edit the plan's own numbers (not its inputs): only a program that applies the file sees it."""
    doc = json.loads(plan_file.read_text())
    fleet = next(a for a in doc["agents"] if a["name"] == agent)["fleet"]
    fleet["max_replicas"] = value
    plan_file.write_text(json.dumps(doc, indent=2))


def gpu_agent(decision: Path) -> str:
    return next(a.name for a in build_plan(load_decision_file(decision)).agents if a.route == "gpu")


def test_program_applies_the_plan_file_beside_the_decision_file(decision: Path) -> None:
    agent = gpu_agent(decision)
    set_max_replicas(write_plan(decision), agent, 17)
    run = run_main(_config(decision), SECRET_KEYS)
    assert run.mocks.one(ASG, "router-asg").inputs["maxSize"] == 17


def test_program_applies_the_plan_file_the_stack_config_names(decision: Path, tmp_path: Path) -> None:
    agent = gpu_agent(decision)
    plan_file = write_plan(decision, tmp_path / "reviewed" / "mixed.plan.json")
    set_max_replicas(plan_file, agent, 13)
    run = run_main(_config(decision, **{"agentdeploy:planFile": str(plan_file)}), SECRET_KEYS)
    assert run.mocks.one(ASG, "router-asg").inputs["maxSize"] == 13


def test_without_a_plan_file_the_program_plans_the_decision_file(decision: Path) -> None:
    fleet = next(a.fleet for a in build_plan(load_decision_file(decision)).agents if a.fleet is not None)
    run = run_main(_config(decision), SECRET_KEYS)
    assert run.mocks.one(ASG, "router-asg").inputs["maxSize"] == fleet.max_replicas


def test_a_named_plan_file_that_is_missing_is_an_error(decision: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.plan.json"
    with pytest.raises(pulumi.RunError, match=r"plan file .*nowhere.plan.json does not exist"):
        run_main(_config(decision, **{"agentdeploy:planFile": str(missing)}), SECRET_KEYS)


def test_an_edited_decision_file_makes_the_plan_stale(decision: Path) -> None:
    write_plan(decision)
    doc = yaml.safe_load(decision.read_text())
    doc["agents"]["intake"]["budget_usd_per_month"] = 999
    decision.write_text(yaml.safe_dump(doc, sort_keys=False))
    expected = (rf"decision file {decision} changed since the plan was written: "
                rf"run `deploy plan {decision} --write` and review the diff")
    with pytest.raises(pulumi.RunError, match=expected.replace(".", r"\.")):
        run_main(_config(decision), SECRET_KEYS)


def test_a_spot_price_refresh_makes_the_plan_stale(decision: Path, tmp_path: Path) -> None:
    """What `deploy catalog refresh-spot` writes between review and merge: a new spot price."""
    write_plan(decision)
    catalog_d = tmp_path / "home" / "catalog.d"
    catalog_d.mkdir(parents=True)
    itype = next(a.fleet.instance_type for a in build_plan(load_decision_file(decision)).agents if a.fleet)
    (catalog_d / "spot-us-east-1.yaml").write_text(yaml.safe_dump({"gpu_instances": {itype: {
        "spot_usd_per_hour": 0.123, "source": "AWS EC2 DescribeSpotPriceHistory (test)", "as_of": "2026-12-01"}}}))
    with pytest.raises(pulumi.RunError, match=r"catalog changed since the plan was written \(spot price refresh\?"
                                              r"[\s\S]*changed: gpu_instances"):
        run_main(_config(decision), SECRET_KEYS)
