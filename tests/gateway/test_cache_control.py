"""serving/cache_control.py: prompt-cache breakpoints on the planned levels, at most four."""

from agentdeploy.serving.cache_control import place_breakpoints


def _big(n_tokens: int) -> str:
    return "abcd" * n_tokens


def test_breakpoints_placed_on_planned_levels_above_minimum_with_ttl():
    body = {
        "tools": [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}],
        "system": _big(5000),
        "messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}],
    }
    out = place_breakpoints(body, ["tools", "system", "conversation"], "1h", 4096)
    assert "cache_control" not in out["tools"][-1]  # tools alone are below the minimum
    assert out["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert out["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert isinstance(body["system"], str)  # input untouched
    small = place_breakpoints({**body, "system": "short"}, ["system"], "5m", 4096)
    assert small["system"] == "short"


def test_breakpoints_never_exceed_four():
    marked = {"type": "ephemeral"}
    body = {
        "system": [{"type": "text", "text": _big(5000), "cache_control": marked}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": marked}, {"type": "text", "text": "y", "cache_control": marked}, {"type": "text", "text": "z", "cache_control": marked}]},
                     {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}],
    }
    out = place_breakpoints(body, ["system", "conversation"], "5m", 1024)
    assert out is body  # already four: nothing added
