"""Many malformed decision files: each gets a clear error and exit code 2, never a traceback."""

from __future__ import annotations

import copy
import random

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
    assert str(path) in output  # names the file
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
            assert "relax" in result.output and "Traceback" not in result.output
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
