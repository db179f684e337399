"""The libyaml fast path reads what the pure YAML 1.2 parser reads, or steps aside.

Differential: every example and every file of the malformed corpus that the fast path accepts
must give the pure parser's data and a node tree with the same kinds, tags, values and lines.
Everything the fast path does not vouch for (and deep nesting, which crashes PyYAML's C composer)
must return None, so the pure parser and its error messages take over.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agentdeploy.planner import yamlsource
from agentdeploy.planner.yamlfast import compose_fast
from agentdeploy.planner.yamlsource import MAX_DEPTH, YamlSyntaxError

from .front_door_corpus import Generator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
PATH = Path("decisions.yaml")


def pure(text: str) -> tuple[Node | None, Any]:
    """The pure path as `yamlsource` ran it before the fast path: compose, check, construct."""
    yaml = yamlsource._yaml()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = yaml.compose(text)
        if root is None:
            return None, None
        yamlsource._check_tree(PATH, root)
        return root, yaml.constructor.construct_document(root)


def outcome(read: Callable[[], tuple[Node | None, Any]]) -> tuple[Any, ...]:
    """What a reader gives: the tree's shape and the data, or the refusal's line, words and field."""
    try:
        root, data = read()
    except YamlSyntaxError as err:
        return ("refused", err.line, err.problem, err.field)
    assert root is not None
    return ("read", shape(root), repr(data))  # repr: types too (1 vs 1.0 vs True), and NaN compares


def shape(node: Node) -> Any:
    """Kind, tag, value and line of every node, in order."""
    line = node.start_mark.line
    if isinstance(node, MappingNode):
        return ("map", str(node.tag), line, [(shape(k), shape(v)) for k, v in node.value])
    if isinstance(node, SequenceNode):
        return ("seq", str(node.tag), line, [shape(item) for item in node.value])
    assert isinstance(node, ScalarNode)
    return ("scalar", str(node.tag), line, node.value, node.style)


def same_as_pure(text: str) -> bool:
    """True when the fast path took the file; then its tree and data must be what the pure parser
    reads after the tree checks (duplicate keys, integer length, size): a file the checks refuse
    never takes the fast path, which is why `yamlsource` does not walk its trees again."""
    fast = compose_fast(text, MAX_DEPTH)
    if fast is None:
        return False
    assert outcome(lambda: fast) == outcome(lambda: pure(text))
    return True


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_take_the_fast_path_and_read_as_the_pure_parser_reads_them(path):
    assert same_as_pure(path.read_text())


def test_every_corpus_file_the_fast_path_takes_reads_as_the_pure_parser_reads_it():
    taken = 0
    for case in Generator(20261201).cases(1200):
        try:
            text = case.data.decode("utf-8-sig")
        except UnicodeDecodeError:
            continue
        try:
            taken += same_as_pure(text)
        except AssertionError as err:
            pytest.fail(f"{case.name}: the fast path and the pure parser disagree\n{err}")
        except Exception as err:  # the fast path took a file the pure parser cannot read
            pytest.fail(f"{case.name}: the fast path read a file the pure parser refuses ({type(err).__name__}: {err})")
    assert taken > 300  # most of the corpus breaks data, not syntax: the comparison ran on many files


@pytest.mark.parametrize("text", ["a: 2001-01-01\n", "a: 2001-12-14t21:59:43.10-05:00\nb: 2002-12-14 21:59:43.1\n", "a: 2001-1-1\n"],
                         ids=["date", "datetimes", "not-a-date"])
def test_timestamps_read_as_the_pure_parser_reads_them(text):
    """The catalog's as-of dates are timestamps: the built-in catalog takes the fast path too."""
    assert same_as_pure(text)


def test_the_builtin_catalog_takes_the_fast_path():
    assert same_as_pure((ROOT / "planner" / "data" / "catalog.yaml").read_text())


def test_yaml_1_2_meanings_are_kept():
    fast = compose_fast("cache: off\nturns: yes\nn: 012\no: 0o17\nt: 1:30\nx: 1_000\n", MAX_DEPTH)
    assert fast is not None
    assert fast[1] == {"cache": "off", "turns": "yes", "n": 12, "o": 15, "t": "1:30", "x": 1000}


@pytest.mark.parametrize("text", [
    "%YAML 1.1\n---\ncache: off\n",          # a directive changes the meanings
    "a: &x 1\nb: *x\n",                      # anchors and aliases (reuse warnings, alias bombs)
    "a: !!str 1\n",                          # explicit tags
    "base: {a: 1}\nx:\n  <<: {b: 2}\n",      # merge keys
    "a: " + "9" * 5000 + "\n",               # an integer Python will not convert
    "a: 1\n---\nb: 2\n",                     # two documents
    "a: \x85b\n",                            # a character YAML refuses (pure parser names it)
    "? {a: 1}\n: x\n",                       # a collection as a key
    "1: a\n1.0: b\n",                         # keys a dict takes as equal (ruamel.yaml: duplicate key)
    "1: a\n'1': b\n",                         # keys with the same text (the tree check: duplicate key)
    "a: " + "9" * 31 + "\n",                 # an integer longer than any field takes (the tree check)
    "a: [1, 2\n",                            # a syntax error: the pure parser's message
    "",                                      # no document
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",  # deeper than the limit
], ids=["directive", "alias", "tag", "merge", "huge-int", "two-docs", "nel", "map-key", "equal-keys", "same-text-keys",
                       "long-int", "syntax", "empty", "deep"])
def test_what_the_fast_path_does_not_vouch_for_goes_to_the_pure_parser(text):
    assert compose_fast(text, MAX_DEPTH) is None


@pytest.mark.parametrize("text", ["[" * 100_000, "- " * 100_000 + "x", "{a: " * 100_000], ids=["flow-seq", "block-seq", "flow-map"])
def test_deep_nesting_never_reaches_a_recursive_c_composer(text):
    # in a child: a segfault there fails this test instead of killing the test run
    code = "import sys\nfrom agentdeploy.planner.yamlfast import compose_fast\nprint(compose_fast(sys.stdin.read(), 50))"
    done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "None"


def test_a_document_over_the_size_limit_goes_to_the_pure_parser(monkeypatch):
    from agentdeploy.planner import yamlfast

    text = "a: [1, 2]\nb: 3\n"  # 7 values: the mapping, its 2 keys, the list and its 2 items, and 3
    assert compose_fast(text, MAX_DEPTH) is not None
    monkeypatch.setattr(yamlfast, "MAX_NODES", 6)
    assert compose_fast(text, MAX_DEPTH) is None
    monkeypatch.setattr(yamlfast, "MAX_NODES", 7)
    assert compose_fast(text, MAX_DEPTH) is not None
