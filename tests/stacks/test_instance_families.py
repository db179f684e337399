"""The stack launches every instance type the plan lists (issue 10, item 4): the spot group's
and the on-demand standby's overrides carry them, the plan's chosen type first."""

from __future__ import annotations

import pytest

from agentdeploy.planner import build_plan, load_decision_file
from tests.stacks.harness import EXAMPLES, run_main

ASG = "aws:autoscaling/group:Group"


@pytest.fixture(scope="module")
def example():
    path = EXAMPLES / "high-volume-router.yaml"
    run = run_main({"agentdeploy:decisionFile": str(path), "aws:region": "us-east-1",
                    "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000"}, ["agentdeploy:anthropicApiKey"])
    return run, build_plan(load_decision_file(path))


def test_both_groups_override_with_every_planned_type(example):
    run, plan = example
    agent = next(a for a in plan.agents if a.fleet)
    groups = [g for g in run.mocks.of_type(ASG) if g.name.startswith(f"fleet-{agent.name}")]
    assert len(groups) == 2  # the spot group and its on-demand standby
    for group in groups:
        overrides = group.inputs["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
        assert [o["instanceType"] for o in overrides] == agent.fleet.instance_types
    assert len({t.split(".")[0] for t in agent.fleet.instance_types}) >= 2
