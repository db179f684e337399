"""YAML loading that remembers where every key came from, with YAML 1.2 meanings.

Validation errors must name the file and line, so a file is composed into a node tree first; a
pydantic error location (agents -> intake -> latency -> p95_s) is then walked through that tree
to the line the user has to change.

The parser is ruamel.yaml in YAML 1.2 mode rather than PyYAML (YAML 1.1): under 1.1 `yes`, `off`
and `on` are booleans and `1:30` is the sexagesimal 90, so `turns: yes` planned one turn and
`cache: off` became `False`. Duplicate keys, which both parsers would otherwise resolve as "last
wins", are refused naming both lines. The node tree is checked before anything is built from it:
nesting depth, the size an alias expands to (billion laughs) and integer length (Python refuses
to convert integers over 4,300 digits) are bounded, so every malformed file ends in
`YamlSyntaxError` with a line.

Plain files (no anchors, tags or directives: every decision file we generate) are composed from
libyaml's events instead (`yamlfast`), into the same ruamel.yaml nodes and data, 6x faster; the
checks above run on that tree too, and anything else, every error included, takes ruamel.yaml.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from agentdeploy.planner.yamlfast import MAX_INT_DIGITS, MAX_NODES, compose_fast

#: Deeper than any decision file or catalog (they nest five levels); the parser recurses per level.
MAX_DEPTH = 50
# MAX_NODES: values a document may expand to, aliases counted as copies of what they point at;
# MAX_INT_DIGITS: digits in an integer (every number field is bounded far below 10**30).

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_KEY = "<<"


@dataclass(frozen=True)
class YamlSource:
    path: Path
    data: Any
    root: Node | None
    #: The text the tree came from: where the tree is dropped (`without_tree`), it is parsed again
    #: from this the first time a line is asked for.
    text: str | None = None

    def without_tree(self) -> YamlSource:
        """The same source keeping its text instead of its node tree. Once a decision file is
        valid, lines are needed only for the rare advice that names one, and the tree is most
        of what reading 10,000 agents keeps (~45 MB of the command's peak; bench/RESULTS.md)."""
        if self.text is None:
            return self
        return YamlSource(self.path, self.data, None, self.text)

    @cached_property
    def _tree(self) -> Node | None:
        if self.root is not None or self.text is None:
            return self.root
        return _parse(self.path, self.text)[0]

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """1-based line of the deepest node of `loc` present in the file."""
        node = self._tree
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        node = value
                        line = key.start_mark.line + 1
                        break
                else:
                    return line
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


class YamlSyntaxError(Exception):
    def __init__(self, path: Path, line: int | None, problem: str, field: str | None = None):
        super().__init__(problem)
        self.path, self.line, self.problem, self.field = path, line, problem, field


def decode(path: Path, raw: bytes) -> str:
    """The file's text; invalid UTF-8 is reported with the line it is on, not a byte offset."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - raw.rfind(b"\n", 0, err.start)
        bad = raw[err.start : err.start + 1]
        raise YamlSyntaxError(path, line, f"not UTF-8 text: byte {bad!r} at column {column} (save the file as UTF-8)") from None


def read_yaml_file(path: Path) -> YamlSource:
    """Read, decode and parse one YAML file (OSError is left to the caller: it has its own words)."""
    return load_yaml_source(path, decode(path, path.read_bytes()))


def load_yaml_source(path: Path, text: str | None = None) -> YamlSource:
    text = decode(path, path.read_bytes()) if text is None else text
    try:
        root, data = _parse(path, text)
    except YamlSyntaxError:
        raise
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        problem = str(err.problem or err.context or "not valid YAML").strip()
        raise YamlSyntaxError(path, line, problem) from None
    except ReaderError as err:
        # a character YAML does not allow (control bytes, NUL): its offset gives the line
        line = text.count("\n", 0, err.position) + 1
        char = chr(err.character) if isinstance(err.character, int) else str(err.character)
        raise YamlSyntaxError(path, line, f"character U+{ord(char[:1] or '?'):04X} is not allowed in YAML; remove it") from None
    except (YAMLError, RecursionError, ValueError) as err:
        raise YamlSyntaxError(path, None, f"not valid YAML ({type(err).__name__}: {str(err)[:200]})") from None
    return YamlSource(path=path, data=data, root=root, text=text)


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)  # pure: the C extension is YAML 1.1
    yaml.max_depth = MAX_DEPTH
    return yaml


def _parse(path: Path, text: str) -> tuple[Node | None, Any]:
    """The node tree (for line numbers) and the data built from it: one parse, not two. Plain
    files take libyaml's events (`yamlfast`); the rest, and every error, the pure parser."""
    fast = compose_fast(text, MAX_DEPTH)
    if fast is not None:
        return fast  # it passes `_check_tree`: yamlfast leaves what the checks refuse to this parser
    yaml = _yaml()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a reused anchor name is legal YAML; the warning is noise on stderr
        root: Node | None = yaml.compose(text)
        if root is None:
            return None, None
        _check_tree(path, root)
        return root, yaml.constructor.construct_document(root)


def _check_tree(path: Path, root: Node) -> None:
    """Duplicate keys, integer length, and the size aliases expand to, each with a line."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node, loc: tuple[str, ...]) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlSyntaxError(path, node.start_mark.line + 1, "an alias refers to the collection that contains it", _dotted(loc))
        open_nodes.add(key)
        total = 1
        if isinstance(node, MappingNode):
            _no_duplicates(path, node, loc)
            for k, v in node.value:
                part = (str(k.value)[:60],) if isinstance(k, ScalarNode) else ("?",)
                total += size(k, loc) + size(v, loc + part)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                total += size(item, loc + (str(i),))
        elif isinstance(node, ScalarNode) and str(node.tag) == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
            raise YamlSyntaxError(path, node.start_mark.line + 1, f"an integer of {len(node.value):,} digits; no field takes more than {MAX_INT_DIGITS}",
                                  _dotted(loc))
        if total > MAX_NODES:
            raise YamlSyntaxError(path, node.start_mark.line + 1, f"the document expands to more than {MAX_NODES:,} values (aliases of aliases?)",
                                  _dotted(loc))
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root, ())


def _dotted(loc: tuple[str, ...]) -> str:
    return ".".join(loc) or "(top level)"


def _no_duplicates(path: Path, node: MappingNode, loc: tuple[str, ...]) -> None:
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.value == _MERGE_KEY:
            continue
        line = key.start_mark.line + 1
        name = str(key.value)
        if name in seen:
            shown = name if len(name) <= 60 else name[:60] + "..."
            raise YamlSyntaxError(path, line, f"duplicate key {shown!r}: first at line {seen[name]}, again at line {line}; keep one",
                                  _dotted(loc + (shown,)))
        seen[name] = line

