"""`deploy plan --json` encodes each agent as soon as its plan is final but for its share of the
stack's fixed cost and keeps text, not plans (planner/jsonstream.py). The bytes must be those of
the whole plan dumped at the end: examples, every scale, random stacks with fleets, user-set
budgets and headroom; the same error for an infeasible stack; and the command falls back to the
plan when the text cannot be made."""

from __future__ import annotations

import random

import pytest
import yaml
from click.testing import CliRunner

from agentdeploy.cli.main import cli, strict_json
from agentdeploy.errors import Infeasible
from agentdeploy.planner import build_plan, jsonstream, load_decision_file, spec_catalog
from agentdeploy.planner.jsonout import plan_json
from agentdeploy.planner.jsonstream import plan_json_text

from .conftest import EXAMPLES, agent_doc, decision_doc
from .test_pricers import random_agent


def both(path, scale: float = 1.0) -> tuple[str, str]:
    spec = load_decision_file(path)
    catalog = spec_catalog(spec)
    return "".join(plan_json_text(spec, catalog, scale=scale)), "".join(plan_json(build_plan(spec, catalog, scale=scale)))


@pytest.mark.parametrize("scale", [1.0, 0.1, 3.0])
@pytest.mark.parametrize("example", ["service-business.yaml", "high-volume-router.yaml"])
def test_examples_stream_to_the_plan_s_bytes(example, scale):
    streamed, whole = both(EXAMPLES / example, scale)
    assert streamed == whole


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stacks_stream_to_the_plan_s_bytes(write_decision, seed):
    rng = random.Random(seed)
    agents = {}
    for i in range(40):
        doc = random_agent(rng)
        if rng.random() < 0.25:
            doc["budget_usd_per_month"] = rng.choice([10**6, 10**7])
        agents[f"a{i}"] = doc
    path = write_decision(decision_doc(agents, budget_headroom=rng.choice([1.2, 1.5, 2.0])))
    streamed, whole = both(path)
    plan = yaml.safe_load(whole)
    routes = {a["route"] for a in plan["agents"]}
    assert "gpu" in routes and "api" in routes  # fleets' fixed-cost shares are exercised
    assert any(a["budget"]["user_set"] for a in plan["agents"])
    assert streamed == whole


def test_an_infeasible_stack_raises_what_the_plan_raises(write_decision):
    impossible = agent_doc(latency={"p95_s": 0.01, "audience": "interactive"})
    path = write_decision(decision_doc({"ok": agent_doc(), "fast": impossible, "faster": impossible}))
    spec = load_decision_file(path)
    catalog = spec_catalog(spec)
    with pytest.raises(Infeasible) as streamed:
        plan_json_text(spec, catalog)
    with pytest.raises(Infeasible) as whole:
        build_plan(spec, catalog)
    assert str(streamed.value) == str(whole.value)
    assert streamed.value.details == whole.value.details and len(whole.value.details) == 2


def test_the_command_falls_back_to_the_plan_when_the_text_cannot_be_made(monkeypatch):
    path = EXAMPLES / "service-business.yaml"

    def refuse(*args, **kwargs):
        raise ValueError("Out of range float values are not JSON compliant: nan")

    monkeypatch.setattr(jsonstream, "plan_json_text", refuse)
    result = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert result.output == strict_json(build_plan(load_decision_file(path)).to_json_dict()) + "\n"
