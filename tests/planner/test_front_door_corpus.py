"""1,200 generated malformed decision files through `deploy plan`: never a traceback.

Each file gets exit 2 (or 3, infeasible, naming the corner to relax), and an error naming the
file, the line and the field it broke (file-level problems, such as invalid UTF-8, name the
line). The line is checked against PyYAML's own node marks, an independent parser, so a wrong
line cannot pass by agreeing with itself. Every seventh file is also planned with `--json`,
whose stdout must be one strict JSON document. A handful go through the real `deploy`
executable as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.planner.textcheck import dotted

from .front_door_corpus import Case, Generator

SEED = 20261201
COUNT = 1200
CASES = Generator(SEED).cases(COUNT)


def _reject_constant(name: str) -> object:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json(text: str) -> object:
    return json.loads(text, parse_constant=_reject_constant)


def oracle_line(data: bytes, path: tuple) -> int | None:
    """The line of the deepest part of `path` present, by PyYAML's marks (None: PyYAML cannot read it).

    Only data-level cases have a path: files PyYAML itself wrote, shallow, so libyaml is safe here.
    """
    try:
        node = yaml.compose(data.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return None
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                return line
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def check(case: Case, path: Path, exit_code: int, output: str, exception: BaseException | None) -> None:
    where = f"{case.name}: exit {exit_code}\n{output[:3000]}"
    assert exception is None or isinstance(exception, SystemExit), (where, repr(exception))
    assert "Traceback" not in output, where
    assert exit_code in (2, 3), where
    if exit_code == 3:
        assert "relax" in output, where
        return
    assert output.startswith("error:") or "\nerror:" in output, where
    places = [(int(n), rest) for n, rest in re.findall(re.escape(str(path)) + r":(\d+): ?(.*)", output)]
    assert places, f"no file:line in the message\n{where}"
    lines = case.data.count(b"\n") + 1
    assert all(1 <= n <= lines + 1 for n, _ in places), where
    if case.line is not None:
        assert any(n == case.line for n, _ in places), f"expected line {case.line}\n{where}"
    if case.path is not None:
        # the field itself, or its parent (a list-level check reports the list, not the item)
        wanted = [(dotted(case.path[:k]), oracle_line(case.data, case.path[:k])) for k in (len(case.path), len(case.path) - 1) if k]
        assert any(rest.startswith(field) and (line is None or n == line) for n, rest in places for field, line in wanted), (
            f"expected one of {wanted}\n{where}")


def test_the_corpus_is_large_and_reproducible():
    assert len(CASES) >= 1000
    again = Generator(SEED).cases(COUNT)
    assert [c.data for c in again] == [c.data for c in CASES]
    families = {c.name.split("-")[0] for c in CASES}
    assert {"number", "insert", "ident", "catalog", "dup", "yaml11", "utf8", "ctrl", "broken", "bomb"} <= families


@pytest.mark.parametrize("chunk", range(4))
def test_every_malformed_file_gets_a_clear_error(tmp_path, chunk):
    runner = CliRunner()
    for i, case in enumerate(CASES[chunk::4]):
        path = tmp_path / f"case{i}.yaml"
        path.write_bytes(case.data)
        result = runner.invoke(cli, ["plan", str(path)])
        check(case, path, result.exit_code, result.output, result.exception)
        if i % 7 == 0:
            result = runner.invoke(cli, ["plan", str(path), "--json"])
            document = strict_json(result.stdout)
            assert isinstance(document, dict) and document["exit_code"] == result.exit_code in (2, 3), (case.name, result.stdout)


def _deploy() -> list[str]:
    exe = shutil.which("deploy")
    return [exe] if exe else [sys.executable, "-m", "agentdeploy"]


def test_a_handful_through_the_real_executable(tmp_path):
    picked = [next(c for c in CASES if c.name.startswith(prefix)) for prefix in ("number", "utf8", "dup", "catalog", "bomb", "ctrl")]
    env = {**os.environ, "AGENTDEPLOY_HOME": str(tmp_path / "home")}
    env.pop("AGENTDEPLOY_DEBUG", None)
    for i, case in enumerate(picked):
        path = tmp_path / f"real{i}.yaml"
        path.write_bytes(case.data)
        # one run checks both channels: the message on stderr, one strict JSON document on stdout
        done = subprocess.run([*_deploy(), "plan", str(path), "--json"], capture_output=True, text=True, env=env, timeout=120)
        check(case, path, done.returncode, done.stderr, None)
        document = strict_json(done.stdout)
        assert isinstance(document, dict) and document["exit_code"] == done.returncode == 2, (case.name, done.stdout, done.stderr)
        assert document["message"] in done.stderr
