"""Many malformed decision files: each gets a clear error and exit code 2, never a traceback."""

from __future__ import annotations

import copy
import math
import random
import re

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from agentdeploy.cli.main import cli

from .conftest import EXAMPLES

BASE = yaml.safe_load((EXAMPLES / "service-business.yaml").read_text())
GARBAGE = [None, -1, 0, "", "x", [], {}, [1, 2], {"a": 1}, 1e309, True, "2.0s", -0.5, 10**12]


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


PATHS = list(_paths(BASE))


def _mutate(rng: random.Random) -> str:
    doc = copy.deepcopy(BASE)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(PATHS)
        parent = doc
        try:
            for p in path[:-1]:
                parent = parent[p]
            key = path[-1]
            action = rng.choice(["delete", "garbage", "misspell"])
            if action == "delete" and isinstance(parent, dict):
                parent.pop(key, None)
            elif action == "misspell" and isinstance(parent, dict) and isinstance(key, str) and key in parent:
                parent[key[:-1] + "x"] = parent.pop(key)
            else:
                parent[key] = rng.choice(GARBAGE)
        except (KeyError, IndexError, TypeError):
            continue
    return yaml.safe_dump(doc, sort_keys=False)


FIXED = [
    "",
    "just a string",
    "- a\n- list\n",
    "version: 1\nstack: {name: x}\nagents: {}\n",
    "version: 2\nstack: {name: x}\nagents: {a: {}}\n",
    "stack:\n  name: x\n agents:\n",  # bad indentation
    "stack: {name: x}\nagents: {a: {latency: {p95_s: fast}}}\n",
    "\x00\x01\x02binary",
    "stack: {name: x}\nagents:\n  a: &anchor\n    b: *anchor\n",
    "{{{{",
    "stack: {name: UPPER}\nagents: {a: 1}\n",
]


def _run(tmp_path, text: str, name: str):
    path = tmp_path / name
    path.write_text(text)
    return path, CliRunner().invoke(cli, ["plan", str(path)])


def _check(path, result):
    output = result.output
    assert result.exit_code == 2, (result.exit_code, output, result.exception)
    assert "Traceback" not in output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert re.search(re.escape(str(path)) + r":\d+", output), output  # names the file and the line
    assert output.startswith("error:") or "\nerror:" in output


def test_fixed_malformed_files(tmp_path):
    for i, text in enumerate(FIXED):
        path, result = _run(tmp_path, text, f"fixed{i}.yaml")
        _check(path, result)


def test_two_hundred_mutations(tmp_path):
    rng = random.Random(20261123)
    checked = 0
    for i in range(200):
        text = _mutate(rng)
        path, result = _run(tmp_path, text, f"mut{i}.yaml")
        if result.exit_code == 0:
            continue  # a mutation can land on an optional field and stay valid
        if result.exit_code == 3:
            assert "relax" in result.output
            assert "Traceback" not in result.output
            continue
        _check(path, result)
        checked += 1
    assert checked > 120  # most mutations must be invalid, or this test proves little


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("fuzz")
    path, result = _run(tmp, text, "any.yaml")
    _check(path, result)


def test_line_numbers_point_at_the_mistake(tmp_path):
    text = (EXAMPLES / "service-business.yaml").read_text().replace("turns: 4", "turns: many")
    lineno = next(i for i, line in enumerate(text.splitlines(), 1) if "turns: many" in line)
    path, result = _run(tmp_path, text, "lines.yaml")
    _check(path, result)
    assert f"{path}:{lineno}: agents.intake.profile.turns" in result.output


#: Every float field of the decision file, as a path into the example (the last part is set).
FLOAT_FIELDS = [
    ("agents", "intake", "volume", "conversations_per_month"),
    ("agents", "intake", "volume", "conversations_per_month_12m"),
    ("agents", "intake", "volume", "peak_factor"),
    ("agents", "intake", "volume", "active_hours_per_day"),
    ("agents", "intake", "latency", "p95_s"),
    ("agents", "intake", "quality", "wrong_answer_cost"),
    ("agents", "intake", "profile", "turn_gap_s"),
    ("agents", "intake", "budget_usd_per_month"),
    ("agents", "marketing-drafts", "latency", "p95_s"),
    ("stack", "ops_overhead_usd_per_fleet_month"),
    ("stack", "budget_headroom"),
]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("field", FLOAT_FIELDS, ids=lambda f: ".".join(f[1:]))
def test_non_finite_numbers_are_rejected_with_their_line(tmp_path, field, value):
    doc = copy.deepcopy(BASE)
    parent = doc
    for part in field[:-1]:
        parent = parent[part]
    parent[field[-1]] = value
    text = yaml.safe_dump(doc, sort_keys=False)  # writes .inf, -.inf, .nan
    lineno = next(i for i, line in enumerate(text.splitlines(), 1) if re.search(r"(\.inf|\.nan)\b", line, re.I))
    assert text.splitlines()[lineno - 1].strip().startswith(f"{field[-1]}:")
    path, result = _run(tmp_path, text, "nonfinite.yaml")
    _check(path, result)
    assert f"{path}:{lineno}: {'.'.join(field)}:" in result.output
    assert "finite number" in result.output


@pytest.mark.parametrize("text", [
    "volume: {conversations_per_month: .inf}",
    "volume: {conversations_per_month: 1000, conversations_per_month_12m: .inf}",
    "volume: {conversations_per_month: 1000, peak_factor: .inf}",
    "volume: {conversations_per_month: .nan}",
    "volume: {conversations_per_month: 1000, hourly_shape: [.inf, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}",
    "volume: {conversations_per_month: 1.0e+300}",
    "volume: {conversations_per_month: 1000, peak_factor: 1.0e+300}",
])
def test_volume_overflow_cases_from_the_audit(tmp_path, text):
    body = (
        "version: 1\nstack: {name: t}\nagents:\n  a:\n"
        "    latency: {p95_s: 10, audience: interactive}\n"
        "    quality: {wrong_answer_cost: medium, task: qa}\n"
        f"    {text}\n"
        "    profile: {turns: 1, input_tokens_per_turn: 2000, output_tokens_per_turn: 800}\n"
    )
    path, result = _run(tmp_path, body, "volume.yaml")
    _check(path, result)
    assert f"{path}:7: agents.a.volume." in result.output


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "0", "-2", "1e9"])
def test_bad_scale_is_invalid_input(scale):
    result = CliRunner().invoke(cli, ["plan", str(EXAMPLES / "service-business.yaml"), "--scale", scale])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert "--scale must be a finite number greater than 0" in result.output
