"""Stack-scoped commands work where the plan provisioned the stack (operations review, defect 3).

The stack here lives in eu-west-1, while the environment (as a CI job that exports one region for
every stack would) says us-east-1: read there, the fleet is simply absent, so reap said "nothing
to reap" and status "healthy". Now the plan's region is used, and a conflicting AWS_REGION or
--region is refused with exit 2 before anything is read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentdeploy.errors import InvalidInput
from agentdeploy.ops.commands import stack_region

from . import cloud
from .deploy_cli import assert_clean_error, deploy

EU = "eu-west-1"


@pytest.fixture
def eu_stack(project: Path) -> str:
    text = (project / "router.yaml").read_text()
    (project / "far.yaml").write_text(re.sub(r"region: us-east-1", f"region: {EU}", text))
    (project / "stacks" / "Pulumi.far.yaml").write_text("config:\n  agentdeploy:decisionFile: far.yaml\n")
    return "far"


def test_stack_region_rules() -> None:
    assert stack_region(EU, None, {}) == EU
    assert stack_region(EU, EU, {"AWS_REGION": "us-east-1"}) == EU  # an explicit, agreeing --region wins
    with pytest.raises(InvalidInput, match="--region us-east-1 disagrees"):
        stack_region(EU, "us-east-1", {})
    with pytest.raises(InvalidInput, match="AWS_DEFAULT_REGION=us-west-2 disagrees"):
        stack_region(EU, None, {"AWS_REGION": EU, "AWS_DEFAULT_REGION": "us-west-2"})


@pytest.mark.parametrize("command", ["reap", "status", "cost"])
def test_a_conflicting_environment_region_is_exit_2(aws, eu_stack: str, command: str) -> None:
    cloud.fleet("far-tr", eu_stack, "ticket-router", desired=1, region=EU)
    proc = deploy(command, "--stack", eu_stack)  # the aws fixture exports AWS_REGION=us-east-1
    assert_clean_error(proc, 2, f"AWS_REGION=us-east-1 disagrees with the stack's plan, which provisions it in {EU}")
    assert f"--region {EU}" in proc.stderr
    as_json = deploy(command, "--stack", eu_stack, "--json")
    assert (as_json.returncode, json.loads(as_json.stdout)["error"]) == (2, "InvalidInput")
    conflicting = deploy(command, "--stack", eu_stack, "--region", "us-east-1")
    assert_clean_error(conflicting, 2, f"--region us-east-1 disagrees with the stack's plan, which provisions it in {EU}")
    assert cloud.group("far-tr", EU)["DesiredCapacity"] == 1


def test_reap_and_status_read_the_plans_region(aws, eu_stack: str) -> None:
    cloud.fleet("far-tr", eu_stack, "ticket-router", desired=1, region=EU)
    env = {"AWS_REGION": EU, "AWS_DEFAULT_REGION": EU}
    reaped = deploy("reap", "--stack", eu_stack, "--dry-run", "--json", env=env)
    assert reaped.returncode == 0, reaped.stderr
    doc = json.loads(reaped.stdout)
    assert doc["region"] == EU
    assert [f["fleet"] for f in doc["fleets"]] == ["far-tr"]
    # An explicit --region equal to the plan's wins over a different environment.
    status = deploy("status", "--stack", eu_stack, "--json", "--region", EU)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["region"] == EU
    by = {a["agent"]: a for a in doc["agents"]}
    assert by["ticket-router"]["fleet"]["name"] == "far-tr"
