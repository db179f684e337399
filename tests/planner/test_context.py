"""Context windows: a model that cannot take the conversation's largest request is no candidate."""

from __future__ import annotations

import pytest

from agentdeploy.errors import Infeasible
from agentdeploy.planner import build_plan, load_catalog, load_decision_file
from agentdeploy.planner.context import largest_request

from .conftest import EXAMPLES, agent_doc, decision_doc

CATALOG = load_catalog(include_home=False)
# 3 turns of 50,000 in / 1,000 out over a 100,000-token prefix; p99 output 2,000 -> max_tokens
# ceil(2,000 x 1.25 / 16) x 16 = 2,512. The last turn: 100,000 + 2 x 51,000 + 50,000 + 2,512 = 254,512.
LONG = {"turns": 3, "input_tokens_per_turn": 50_000, "output_tokens_per_turn": 1_000, "static_prefix_tokens": 100_000}


def plan(write_decision, **agent):
    return build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc(**agent)}))), CATALOG)


def infeasible(write_decision, **agent) -> str:
    with pytest.raises(Infeasible) as err:
        plan(write_decision, **agent)
    assert err.value.exit_code == 3
    return " ".join(err.value.details)


def test_too_small_a_context_excludes_the_model_with_a_reason(write_decision):
    # a 252,000-token prompt takes Sonnet ~14.6 s to first token (2.0 s + 252 x 0.05 s prefill): a 30 s ceiling
    a = plan(write_decision, profile=LONG, latency={"p95_s": 30, "audience": "interactive"}).agents[0]
    # qa / medium: Haiku (200,000) would be the cheapest; only the 1M-context models hold 254,512
    assert a.model == "claude-sonnet-4-6"
    note = next(w for w in a.why if w.startswith("excluded for their context windows"))
    assert "claude-haiku-4-5 (200,000)" in note
    assert "llama-3.1-8b (131,072)" in note
    assert "254,512 tokens: static prefix 100,000 + history 102,000 + input 50,000 + max_tokens 2,512" in note


def test_without_resent_history_the_small_model_fits(write_decision):
    # 100,000 + 50,000 + 2,512 = 152,512 <= 200,000
    a = plan(write_decision, profile={**LONG, "resend_history": False}).agents[0]
    assert a.model == "claude-haiku-4-5"
    notes = [w for w in a.why if w.startswith("excluded for their context windows")]
    assert not any("claude-haiku-4-5" in w for w in notes)
    assert notes and "qwen2.5-7b (32,768)" in notes[0]  # 152,512 is still too much for Qwen's window


def test_no_model_fits_is_infeasible_naming_the_context(write_decision, tmp_path):
    text = infeasible(write_decision, profile={**LONG, "static_prefix_tokens": 950_000})
    # 950,000 + 102,000 + 50,000 + 2,512 = 1,104,512 against Sonnet 4.6's 1,000,000
    assert "the largest request (1,104,512 tokens" in text
    assert "largest: claude-sonnet-4-6, 1,000,000 tokens" in text
    assert "cut 104,512 tokens" in text
    assert f"{tmp_path}" in text
    assert "decisions.yaml:" in text


def test_pinned_model_too_small_is_infeasible(write_decision):
    text = infeasible(write_decision, profile=LONG, overrides={"model": "claude-haiku-4-5"})
    assert "pinned claude-haiku-4-5: its 200,000-token context cannot hold the largest request (254,512 tokens" in text
    text = infeasible(write_decision, profile=LONG, quality={"wrong_answer_cost": "low", "task": "classification"}, overrides={"model": "qwen2.5-7b"})
    assert "pinned qwen2.5-7b: its 32,768-token context" in text


def test_fleet_max_model_len_holds_the_largest_request():
    spec = load_decision_file(EXAMPLES / "high-volume-router.yaml")
    a = build_plan(spec, CATALOG).agent("ticket-router")
    request = largest_request(spec.agents["ticket-router"].profile, a.max_tokens)
    assert a.fleet is not None
    assert request.total <= a.fleet.max_model_len <= CATALOG.open_models[a.model].context_tokens
