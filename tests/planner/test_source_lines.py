"""A valid decision file keeps its text, not its node tree; a line asked for later (advice that
names `file:line`) is the line the tree would have given."""

from __future__ import annotations

from agentdeploy.planner import load_decision_file
from agentdeploy.planner.yamlsource import load_yaml_source

from .conftest import EXAMPLES


def test_lines_after_validation_come_from_the_text_as_they_came_from_the_tree():
    path = EXAMPLES / "service-business.yaml"
    spec = load_decision_file(path)
    source = spec.source
    assert source is not None and source.root is None and source.text == path.read_text()
    fresh = load_yaml_source(path)
    assert fresh.root is not None
    locs = [("agents", name, *field) for name in spec.agents for field in
            [(), ("latency",), ("latency", "p95_s"), ("volume", "conversations_per_month"), ("profile", "turns"), ("nope",)]]
    locs += [("stack", "name"), ("agents",), ("no", "such", "key"), ()]
    assert [source.line_of(loc) for loc in locs] == [fresh.line_of(loc) for loc in locs]
    assert len({source.line_of(loc) for loc in locs}) > 5
