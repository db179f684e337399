"""YAML loading that remembers where every key came from.

Validation errors must name the file and line, so the decision file is composed into a node
tree first; a pydantic error location (agents -> intake -> latency -> p95_s) is then walked
through that tree to the line the user has to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class YamlSource:
    path: Path
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """1-based line of the deepest node of `loc` present in the file."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        node = value
                        line = key.start_mark.line + 1
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


class YamlSyntaxError(Exception):
    def __init__(self, path: Path, line: int | None, problem: str):
        super().__init__(problem)
        self.path, self.line, self.problem = path, line, problem


def load_yaml_source(path: Path, text: str | None = None) -> YamlSource:
    text = path.read_text() if text is None else text
    try:
        root, data = _parse(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSyntaxError(path, line, f"{err.problem or err.context}") from None
    except yaml.reader.ReaderError as err:
        # a character YAML does not allow (control bytes, NUL): its offset gives the line
        line = text.count("\n", 0, err.position) + 1
        raise YamlSyntaxError(path, line, f"character {err.character!r} is not allowed in YAML ({err.reason})") from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError(path, None, str(err)) from None
    return YamlSource(path=path, data=data, root=root)


#: libyaml's parser when PyYAML was built with it: ~5x faster on a 1,000-agent file.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data built from it: one parse, not two."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def safe_load(text: str) -> Any:
    """yaml.safe_load, with libyaml where available."""
    return yaml.load(text, Loader=_LOADER)
