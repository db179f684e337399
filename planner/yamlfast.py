"""The fast way in for plain YAML: libyaml's C parser for events, our own composer for the tree.

ruamel.yaml's pure-Python scanner costs about 1.3 s per 1,000 agents, most of `deploy plan`'s
reading. libyaml is 6x faster but has two traps: PyYAML's C composer recurses on the C stack
(100,000 `[` segfault it), and PyYAML resolves scalars by YAML 1.1 (`off` is False). So only
libyaml's *events* are used (its parser keeps its state on the heap: deep nesting is an error,
never a crash), and this module composes them iteratively into ruamel.yaml nodes, resolving each
scalar with ruamel.yaml's YAML 1.2 resolver and building it with ruamel.yaml's constructor. The
tree and the data are therefore what the pure parser makes; the nodes keep libyaml's start marks
only (a line is all the planner asks of a node; end marks were a third of a 10,000-agent tree).

Anything this path does not vouch for returns None and the caller parses with ruamel.yaml, whose
errors and warnings are the ones users see: a parse error, characters YAML refuses, directives,
anchors and aliases, explicit tags, a collection as a key, tags other than the plain ones (str,
int, float, bool, null, and the timestamps the catalog's as-of dates are), more than one
document, or nesting deeper than the limit. So are
the files `yamlsource`'s tree checks would refuse (two keys with the same text, an integer of
more than MAX_INT_DIGITS digits, more than MAX_NODES values): a tree this path returns passes
them, and is not walked again.
"""

from __future__ import annotations

import importlib
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import Reader

#: Values a document may have (aliases count as copies; this path takes none) and digits an integer may have.
MAX_NODES = 2_000_000
MAX_INT_DIGITS = 30
_INT_TAG = "tag:yaml.org,2002:int"
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp"))
_CParser: Any = getattr(importlib.import_module("yaml.cyaml"), "CParser", None) if yaml.__with_libyaml__ else None
# None: PyYAML built without libyaml, and every file takes the pure parser


def compose_fast(text: str, max_depth: int) -> tuple[Node, Any] | None:
    """(root node, data) as the pure parser would make them, or None: use the pure parser."""
    if _CParser is None or Reader.NON_PRINTABLE.search(text):
        return None
    parser = _CParser(text)
    try:
        return _compose(parser, max_depth)
    except (yaml.YAMLError, _Unvouched):
        return None
    finally:
        parser.dispose()


class _Unvouched(Exception):
    """The document uses something only the pure parser handles as users expect."""


class _Scalars:
    """Tag and value of each distinct plain scalar, resolved and built once (keys repeat per agent)."""

    def __init__(self) -> None:
        loader = YAML(typ="safe", pure=True)  # the resolver and constructor of the pure path
        self.resolver: Any = loader.resolver
        self.constructor: Any = loader.constructor
        self.seen: dict[tuple[str, tuple[bool, bool]], tuple[Any, Any]] = {}

    def get(self, value: str, implicit: tuple[bool, bool]) -> tuple[Any, Any]:
        key = (value, implicit)
        found = self.seen.get(key)
        if found is None:
            tag = self.resolver.resolve(ScalarNode, value, implicit)
            if str(tag) not in _PLAIN_TAGS:
                raise _Unvouched(str(tag))
            if str(tag) == _INT_TAG and len(value) > MAX_INT_DIGITS:
                raise _Unvouched("a long integer")
            try:
                data = self.constructor.construct_object(ScalarNode(tag, value), deep=True)
            except Exception as err:  # a 5,000-digit integer, a bad float: the pure path says which line
                raise _Unvouched(str(tag)) from err
            found = (tag, data)
            self.seen[key] = found
        return found


def _compose(parser: Any, max_depth: int) -> tuple[Node, Any]:
    get = parser.get_event
    if not isinstance(get(), yaml.StreamStartEvent):
        raise _Unvouched("stream")
    start = get()
    if not isinstance(start, yaml.DocumentStartEvent) or start.version is not None or start.tags:
        raise _Unvouched("directive or empty stream")
    scalars = _Scalars()
    map_tag = scalars.resolver.resolve(MappingNode, None, True)
    seq_tag = scalars.resolver.resolve(SequenceNode, None, True)
    # one frame per open collection: [node, data, key node waiting for its value, its key, the keys' texts]
    stack: list[list[Any]] = []
    root: tuple[Node, Any] | None = None
    nodes = 0
    while root is None:
        event = get()
        kind = type(event)
        if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            node, data, _, _, _ = stack.pop()
        else:
            if event.anchor is not None or kind is yaml.AliasEvent or getattr(event, "tag", None) is not None:
                raise _Unvouched("anchor, alias or tag")
            if len(stack) + 1 > max_depth:
                raise _Unvouched("depth")
            nodes += 1
            if nodes > MAX_NODES:
                raise _Unvouched("size")
            if kind is yaml.ScalarEvent:
                tag, data = scalars.get(event.value, event.implicit)
                node = ScalarNode(tag, event.value, event.start_mark, None, style=event.style or None)  # plain: None, as ruamel
            elif kind is yaml.MappingStartEvent:
                node, data = MappingNode(map_tag, [], event.start_mark, None, flow_style=event.flow_style), {}
                stack.append([node, data, None, None, set()])
                continue
            elif kind is yaml.SequenceStartEvent:
                node, data = SequenceNode(seq_tag, [], event.start_mark, None, flow_style=event.flow_style), []
                stack.append([node, data, None, None, None])
                continue
            else:
                raise _Unvouched(kind.__name__)
        if not stack:
            root = (node, data)
            break
        frame = stack[-1]
        if isinstance(frame[1], list):
            frame[0].value.append(node)
            frame[1].append(data)
        elif frame[2] is None:
            if not isinstance(node, ScalarNode):
                raise _Unvouched("a collection as a key")
            if data in frame[1]:  # `1:` and `1.0:`, `true:` and `1:`: ruamel.yaml refuses what a dict merges
                raise _Unvouched("equal keys")
            if node.value in frame[4]:  # `1:` and `"1":`: the tree check refuses the same text twice
                raise _Unvouched("keys with the same text")
            frame[4].add(node.value)
            frame[2], frame[3] = node, data
        else:
            frame[0].value.append((frame[2], node))
            frame[1][frame[3]] = data
            frame[2] = frame[3] = None
    if not isinstance(get(), yaml.DocumentEndEvent) or not isinstance(get(), yaml.StreamEndEvent):
        raise _Unvouched("more than one document")
    return root
