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
from agentdeploy.planner.jsonout import dumps, plan_json

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
