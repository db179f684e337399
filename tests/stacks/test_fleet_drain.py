"""The fleet's load balancer never cuts a request the draining node still serves (operations
review, defect 11): the target group's deregistration delay outlasts the node agent's drain,
computed here with the node agent's own drain rules for both ways a node goes (a spot notice,
the group's scale-in), under the real Pulumi program and the mock runtime.

Timeline (defaults, 90 s vLLM shutdown timeout, spot): the agent deregisters at once, waits for
in-flight requests until SIGTERM is due at +20 s, vLLM's own drain may run until +110 s and the
agent waits for its exit until +115 s. A delay equal to the shutdown timeout (90 s) cut it.
"""

from __future__ import annotations

import pytest

from agentdeploy.serving.node.drain import (
    DrainTiming,
    default_drain_budget_s,
    exit_wait_deadline,
    sigterm_deadline,
)
from agentdeploy.stacks.components.gpu_fleet import deregistration_delay_s
from agentdeploy.templates.vllm_args import DRAIN_OVERHEAD_S, SPOT_NOTICE_S
from tests.stacks.harness import mixed_decision_file, run_main

TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
START = 1_000_000.0  # the drain starts (and the node leaves its target group) here


def _served_until(shutdown_timeout_s: float, notice_s: float) -> float:
    """Seconds after deregistration until which the node agent may still let vLLM serve: SIGTERM
    at its latest, then vLLM's drain, bounded by how long the agent waits for it to exit."""
    timing = DrainTiming(shutdown_timeout_s)
    notice = START + notice_s
    sigterm = sigterm_deadline(notice, timing)
    return max(sigterm + shutdown_timeout_s, exit_wait_deadline(sigterm, notice, timing)) - START


def _drain_windows(shutdown_timeout_s: float) -> dict[str, float]:
    return {
        "spot": _served_until(shutdown_timeout_s, SPOT_NOTICE_S),
        # notice poll 0: the longest budget the agent can give itself
        "scale-in": _served_until(shutdown_timeout_s, default_drain_budget_s(shutdown_timeout_s, notice_poll_s=0)),
    }


@pytest.mark.parametrize("shutdown_timeout_s", [1, 30, 80, 90, 105])
def test_the_delay_outlasts_every_drain_the_node_agent_can_run(shutdown_timeout_s: int, tmp_path) -> None:
    """Over the shutdown timeouts the stack accepts (vllm_args: 1 .. notice - overhead)."""
    assert shutdown_timeout_s <= SPOT_NOTICE_S - DRAIN_OVERHEAD_S
    from agentdeploy.planner import build_plan, load_decision_file

    plan = build_plan(load_decision_file(mixed_decision_file(tmp_path)))
    fleet = next(a.fleet for a in plan.agents if a.fleet is not None)
    fleet = fleet.model_copy(update={"shutdown_timeout_s": shutdown_timeout_s})
    delay = deregistration_delay_s(fleet)
    windows = _drain_windows(shutdown_timeout_s)
    assert all(delay > w for w in windows.values()), (delay, windows)
    assert delay <= 3600  # ELB's largest deregistration delay


def _program_delay(tmp_path, monkeypatch, shutdown_timeout_s: int | None) -> tuple[int, int]:
    """Run the program for the mixed plan (its fleet's shutdown timeout changed when given);
    the fleet target group's delay and the timeout the plan carried."""
    from agentdeploy.stacks import program

    load_plan = program.load_plan
    carried: dict[str, int] = {}

    def with_timeout(path, stack, plan_file=None):
        plan, catalog = load_plan(path, stack, plan_file)
        agents = []
        for agent in plan.agents:
            if agent.fleet is not None:
                fleet = agent.fleet
                if shutdown_timeout_s is not None:
                    fleet = fleet.model_copy(update={"shutdown_timeout_s": shutdown_timeout_s})
                carried["s"] = fleet.shutdown_timeout_s
                agent = agent.model_copy(update={"fleet": fleet})
            agents.append(agent)
        return plan.model_copy(update={"agents": agents}), catalog

    monkeypatch.setattr(program, "load_plan", with_timeout)
    config = {"agentdeploy:decisionFile": str(mixed_decision_file(tmp_path)), "aws:region": "us-east-1",
              "agentdeploy:anthropicApiKey": "sk-ant-test-key-000000"}
    run = run_main(config, secret_keys=["agentdeploy:anthropicApiKey"])
    assert run.error is None
    groups = [r for r in run.mocks.of_type(TARGET_GROUP) if "fleet-" in r.name]
    assert len(groups) == 1, [r.name for r in groups]
    return groups[0].inputs["deregistrationDelay"], carried["s"]


def test_the_fleet_target_group_carries_the_delay_derived_from_the_plan(tmp_path, monkeypatch) -> None:
    delay, shutdown = _program_delay(tmp_path, monkeypatch, None)
    assert shutdown == 90  # the plan's default
    assert delay == 120  # the review's figure: 90 s of vLLM drain + 30 s before SIGTERM and for the hook
    assert all(delay > w for w in _drain_windows(shutdown).values())


def test_a_longer_shutdown_timeout_in_the_plan_lengthens_the_delay(tmp_path, monkeypatch) -> None:
    """105 s (the most the stack accepts): the scale-in drain outlasts the spot notice."""
    delay, shutdown = _program_delay(tmp_path, monkeypatch, 105)
    assert (shutdown, delay) == (105, 135)
    assert all(delay > w for w in _drain_windows(shutdown).values())
