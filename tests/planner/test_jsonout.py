"""`deploy plan --json` writes what `json.dumps(plan, indent=2, allow_nan=False)` wrote, byte for
byte, through planner/jsonout.py (faster, agent by agent), and pausing the cyclic collector for
the command leaves it as it found it."""

from __future__ import annotations

import gc
import json

import pytest
from click.testing import CliRunner

from agentdeploy.cli.main import cli, strict_json
from agentdeploy.planner import build_plan, load_decision_file
from agentdeploy.planner.jsonout import agent_head, agent_text, dumps, plan_json

from .conftest import EXAMPLES

TRICKY = [
    {}, [], "", {"a": {}}, {"a": []}, [[]], [{}],
    {"é": "naïve ☃ \u2028 \x00 \t \"quoted\" \\ /", "n": None, "t": True, "f": False},
    {"i": 0, "j": -12, "big": 10**30, "f": 0.0, "g": -0.0, "h": 7e-05, "k": 1e16, "m": 123456789.123, "p": 0.1 + 0.2},
    {3: "int key", 2.5: "float key", True: "bool key", False: "false key", None: "none key"},
    ("tu", "ple"),
]
DEEP: object = {"deep": "x"}
for _level in range(20):
    DEEP = [_level, DEEP]
TRICKY.append(DEEP)


@pytest.mark.parametrize("value", TRICKY)
def test_dumps_is_json_dumps_with_indent_2(value):
    assert dumps(value) == json.dumps(value, indent=2, allow_nan=False)


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"x": float("-inf")}, {float("nan"): 1}])
def test_numbers_json_cannot_carry_are_refused(value):
    with pytest.raises(ValueError):
        dumps(value)


@pytest.mark.parametrize("example", ["service-business.yaml", "high-volume-router.yaml"])
def test_plan_json_is_strict_json_of_the_plan(example):
    plan = build_plan(load_decision_file(EXAMPLES / example))
    assert "".join(plan_json(plan)) == strict_json(plan.to_json_dict())
    empty = plan.model_copy(update={"agents": []})
    assert "".join(plan_json(empty)) == strict_json(empty.to_json_dict())


def test_plan_command_prints_strict_json_and_restores_the_collector():
    path = EXAMPLES / "service-business.yaml"
    assert gc.isenabled()
    result = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert result.output == strict_json(build_plan(load_decision_file(path)).to_json_dict()) + "\n"
    assert gc.isenabled()
    gc.disable()
    try:
        CliRunner().invoke(cli, ["plan", str(path), "--json"])
        assert not gc.isenabled()
    finally:
        gc.enable()


AWKWARD_TEXT = ["café ☃", "tab\there \x01 \x7f", "\u2028 \"quoted\" \\ /", "plain"]
AWKWARD_NUMBERS = [7e-05, 1.2345e-07, 5e-324, 1e16, 1.5e300, 0.0001, 123456789012345.6, -0.0]


def _as_json_dumps(agent):
    """The agent's text the way `plan_json` writes it from `model_dump` (json.dumps' bytes)."""
    text = json.dumps({"agents": [agent.model_dump(mode="json")]}, indent=2, allow_nan=False)
    return text[text.index("[") + 6:text.rindex("]") - 3]


def _agent_text(agent):
    tail = {"budget": agent.budget, "volume": agent.volume, "why": agent.why}
    return agent_text(agent_head(agent), tail)


@pytest.mark.parametrize("text", AWKWARD_TEXT)
@pytest.mark.parametrize("number", AWKWARD_NUMBERS)
def test_agent_text_is_json_dumps_whatever_its_strings_and_numbers(text, number):
    """pydantic's serializer writes the agent where it writes what json.dumps does; a string or
    number it writes otherwise (escapes, exponents) goes through the encoder instead."""
    agent = build_plan(load_decision_file(EXAMPLES / "service-business.yaml")).agents[0]
    budget = agent.budget.model_copy(update={"gateway_usd": number})
    odd = agent.model_copy(update={"description": text, "max_tokens": 10**20, "volume": {"launch": number, "month_12": number},
                                   "budget": budget, "why": [text, *agent.why]})
    assert _agent_text(odd) == _as_json_dumps(odd)
    assert _agent_text(agent) == _as_json_dumps(agent)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["head", "tail"])
def test_agent_text_refuses_numbers_json_cannot_carry(number, where):
    agent = build_plan(load_decision_file(EXAMPLES / "service-business.yaml")).agents[0]
    if where == "head":
        odd = agent.model_copy(update={"switch": None, "break_even_conversations_per_month": number})
    else:
        odd = agent.model_copy(update={"volume": {"launch": number, "month_12": 1.0}})
    with pytest.raises(ValueError):
        _agent_text(odd)
