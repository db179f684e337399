"""One jinja2 environment for every rendered artefact (user data, units, scripts, configs).

StrictUndefined turns a missing variable into an error at render time instead of an empty
string on a GPU node at boot, where it would cost a cold start to notice. The filters quote
values for the language they land in (shell, systemd, YAML), so a template never builds
quoting by hand.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from agentdeploy.errors import InvalidInput

TEMPLATE_DIR = Path(__file__).parent


def shell_quote(value: Any) -> str:
    """Quote one value as a single POSIX shell word."""
    return shlex.quote(str(value))


def systemd_quote(value: Any) -> str:
    """Quote one value as a single word of a systemd Exec= line.

    systemd expands `%` specifiers and `$VAR` in Exec lines, so both are escaped; words with
    spaces, quotes or backslashes are double-quoted with C-style escapes.
    """
    text = str(value)
    bad = sorted({f"U+{ord(c):04X}" for c in text if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        # A newline would end the Exec= line and start a directive of the attacker's choosing;
        # the decision file refuses control characters, and this is the last line of defence.
        raise InvalidInput(f"refusing to write a control character ({', '.join(bad)}) into a systemd unit",
                           hint="remove it from the decision file or catalog value it came from")
    text = text.replace("%", "%%").replace("$", "$$")
    if text and not any(c in text for c in ' "\'\\;'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_argv(argv: Iterable[Any]) -> str:
    return " ".join(systemd_quote(a) for a in argv)


def to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip("\n")


def indent_block(text: str, width: int) -> str:
    """Indent every line (the first included) for a YAML block scalar."""
    pad = " " * width
    return "\n".join(pad + line if line else line for line in text.splitlines())


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = shell_quote
    env.filters["sdquote"] = systemd_quote
    env.filters["sdargv"] = systemd_argv
    env.filters["to_yaml"] = to_yaml
    env.filters["to_json"] = lambda v: json.dumps(v, sort_keys=True)
    env.filters["indent_block"] = indent_block
    return env


def render(name: str, **context: Any) -> str:
    """Render templates/<name> with `context`; a missing variable raises jinja2.UndefinedError."""
    return environment().get_template(name).render(**context)
