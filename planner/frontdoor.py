"""The decision file's way in: bytes to checked YAML data, every refusal an `InvalidInput` with a line.

`spec.load_decision_file` validates the data this returns against the models; everything before
that lives here: the size cap, UTF-8, the YAML 1.2 parse and its checks (`yamlsource`), the
top-level shape, and control characters in values bound for rendered files (`textcheck`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentdeploy.errors import InvalidInput
from agentdeploy.planner.textcheck import control_characters, dotted
from agentdeploy.planner.yamlsource import YamlSource, YamlSyntaxError, decode, load_yaml_source

#: Bytes in a decision file: ~30,000 agents written out in full. Plain YAML parses with libyaml
#: (`yamlfast`, about 0.5 s CPU a MiB); anything else with the pure parser, about 3 s a MiB.
MAX_FILE_BYTES = 16 * 2**20
#: Problems listed in one error; the rest are counted (fix the first ones, run again).
MAX_DETAILS = 40


def read_decision_source(path: Path, text: str | None = None) -> YamlSource:
    """The parsed file, a mapping at the top level; `text` skips reading (already decoded)."""
    try:
        if text is None:
            if not path.is_file():
                raise InvalidInput(f"{path}: no such decision file", hint="pass the path of a YAML decision file")
            try:
                raw = path.read_bytes()
            except OSError as err:
                raise InvalidInput(f"{path}: cannot read decision file ({err.strerror})") from None
            if len(raw) > MAX_FILE_BYTES:
                raise InvalidInput(f"{path}:1: (top level): {len(raw):,} bytes; a decision file is at most {MAX_FILE_BYTES:,}",
                                   hint="split the agents into several stacks")
            text = decode(path, raw)
        source = load_yaml_source(path, text)
    except YamlSyntaxError as err:
        where = f"{err.path}:{err.line}" if err.line else str(err.path)
        field = f"{err.field}: " if err.field else ""
        hint = None if err.field else "check indentation and quoting on that line"
        raise InvalidInput(f"{where}: {field}not valid YAML: {err.problem}", hint=hint) from None
    if not isinstance(source.data, dict):
        raise InvalidInput(
            f"{path}:1: (top level): a decision file is a mapping with `stack:` and `agents:` at the top level",
            hint="see examples/service-business.yaml",
        )
    return source


def text_problems(source: YamlSource) -> list[str]:
    """Control characters anywhere in the file: a newline in a region or a model id would end up
    in a node's env file or cloud-init, whether or not the rest of the file is valid."""
    return [
        f"{where(source, loc)}: {dotted(loc)}: {problem}; control characters cannot reach a rendered file"
        for loc, problem in control_characters(source.data)
    ]


def refuse(path: Path, details: list[str]) -> InvalidInput:
    """One error for every problem found, the list cut at `MAX_DETAILS` (a huge file is not echoed)."""
    shown = details[:MAX_DETAILS] + ([f"... and {len(details) - MAX_DETAILS:,} more"] if len(details) > MAX_DETAILS else [])
    return InvalidInput(
        f"{path}: {len(details):,} problem{'s' if len(details) > 1 else ''} in the decision file",
        details=shown,
        hint="`deploy schema` prints the JSON Schema of the decision file",
    )


def where(source: YamlSource, loc: tuple[Any, ...]) -> str:
    """`file:line` of a location in the file (`file` alone when it has no line)."""
    line = source.line_of(loc)
    return f"{source.path}:{line}" if line else str(source.path)
