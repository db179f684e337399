"""Prompt-cache billing: a read only of what an earlier request wrote, by hand and by replay."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentdeploy.planner import build_plan, load_catalog, load_decision_file
from agentdeploy.planner.caching import OPTIONS, CacheOption, Hits, conversation_bill
from agentdeploy.planner.spec import Profile

from .cachesim import simulate
from .conftest import agent_doc, decision_doc

CATALOG = load_catalog(include_home=False)
HAIKU = CATALOG.claude_models["claude-haiku-4-5"]  # $1 / $5 per M, writes 1.25x (5m), reads 0.1x, minimum 4096
SONNET = CATALOG.claude_models["claude-sonnet-4-6"]  # $3 / $15 per M, minimum 2048


def hits(first: float = 0.0, gap_s: float = 30.0, ttl: str = "5m") -> Hits:
    """Exact gaps: the previous turn's entry is live when the gap is within the TTL."""
    return Hits(first=first, own=1.0 if gap_s <= {"5m": 300.0, "1h": 3600.0}[ttl] else 0.0)


def plan_one(write_decision, **agent):
    return build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc(**agent)}))), CATALOG).agents[0]


def test_turn_under_the_minimum_leaves_nothing_to_read(write_decision):
    """The audit's repro: turn 1 is under Haiku's minimum, so turn 2 cannot read it."""
    profile = Profile(turns=2, input_tokens_per_turn=2000, output_tokens_per_turn=1500, static_prefix_tokens=0)
    bill = conversation_bill(profile, HAIKU, CacheOption("5m", conversation=True), hits())
    # turn 1: 2,000 tokens < 4,096: uncached, nothing written.
    # turn 2: 3,500 history + 2,000 input = 5,500 >= 4,096: all of it written, nothing read.
    assert (bill.uncached_input, bill.cache_write, bill.cache_read) == (2000, 5500, 0)

    a = plan_one(write_decision, profile={"turns": 2, "input_tokens_per_turn": 2000, "output_tokens_per_turn": 1500})
    # with caching: 1000 x (2000 x $1/M + 5500 x $1.25/M + 3000 x $5/M) = $23.875
    # off:          1000 x (7500 x $1/M + 3000 x $5/M)                   = $22.50
    assert a.model == "claude-haiku-4-5"
    assert a.cache.enabled is False
    assert a.cost.monthly_usd.launch == pytest.approx(22.50)


def test_four_turn_conversation_cache_by_hand(write_decision):
    a = plan_one(
        write_decision,
        overrides={"model": "claude-sonnet-4-6"},
        profile={"turns": 4, "input_tokens_per_turn": 1500, "output_tokens_per_turn": 500, "turn_gap_s": 30, "turn_gap_cv": 0},
    )
    # Sonnet, minimum 2,048; prompt of turn k = 2,000 x (k-1) + 1,500 tokens:
    #   turn 1: 1,500 < 2,048          -> 1,500 uncached, nothing written
    #   turn 2: 3,500, nothing to read -> 3,500 written
    #   turn 3: 5,500                  -> 3,500 read (turn 2's entry, 30 s old), 2,000 written
    #   turn 4: 7,500                  -> 5,500 read, 2,000 written
    # 5m per conversation: 1,500 x $3/M + 7,500 x $3.75/M + 9,000 x $0.30/M + 2,000 x $15/M = $0.065325
    # 1h: writes at $6/M -> $0.0822; off: 18,000 x $3/M + $0.03 = $0.084
    assert a.cache.enabled
    assert a.cache.ttl == "5m"
    assert a.cache.breakpoints == ["system", "conversation"]
    items = a.cost.items["launch"]
    assert items.uncached_input == pytest.approx(4.5)
    assert items.cache_write == pytest.approx(28.125)
    assert items.cache_read == pytest.approx(2.7)
    assert items.output == pytest.approx(30.0)
    assert a.cost.monthly_usd.launch == pytest.approx(65.325, abs=0.006)


def test_turn_gap_beyond_the_ttl_reads_nothing():
    profile = Profile(turns=3, input_tokens_per_turn=3000, output_tokens_per_turn=100, static_prefix_tokens=0)
    bill = conversation_bill(profile, SONNET, CacheOption("5m", conversation=True), hits(gap_s=600))
    # every turn is over 2,048 and writes its whole prompt: 3,000 + 6,100 + 9,200; the 5 min entry is gone each time
    assert (bill.uncached_input, bill.cache_write, bill.cache_read) == (0, 18300, 0)


profiles = st.builds(
    Profile,
    turns=st.integers(1, 6),
    input_tokens_per_turn=st.integers(1, 5000),
    output_tokens_per_turn=st.integers(1, 3000),
    static_prefix_tokens=st.sampled_from([0, 500, 1024, 2048, 3000, 4096, 9000]),
    resend_history=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    profiles,
    st.sampled_from([HAIKU, SONNET]),
    st.sampled_from(OPTIONS),
    st.sampled_from([5.0, 30.0, 299.0, 301.0, 1800.0, 4000.0]),
    st.floats(0.0, 1.0),
    st.booleans(),
)
# the shapes the audit found: early turns under the minimum, later ones over it
@example(Profile(turns=2, input_tokens_per_turn=2000, output_tokens_per_turn=1500), HAIKU, OPTIONS[3], 30.0, 0.001, False)
@example(Profile(turns=4, input_tokens_per_turn=900, output_tokens_per_turn=700, static_prefix_tokens=1024), HAIKU, OPTIONS[4], 30.0, 0.01, False)
@example(Profile(turns=3, input_tokens_per_turn=400, output_tokens_per_turn=900, static_prefix_tokens=500), SONNET, OPTIONS[3], 299.0, 0.5, False)
def test_bill_matches_request_by_request_replay(profile, model, option, gap, h, batch):
    """Given the chance `h` that another conversation wrote the static prefix, the bill is the replay's."""
    if batch and (option.conversation or option.ttl == "5m"):
        return  # the Batch API route offers neither (see cache_choices)
    own = 1.0 if option.ttl and gap <= {"5m": 300.0, "1h": 3600.0}[option.ttl] else 0.0
    bill = conversation_bill(profile, model, option, Hits(first=h, own=own), batch=batch)
    ref = simulate(profile, model.min_cacheable_tokens, option, h=h, turn_gap_s=gap, batch=batch)
    assert bill.uncached_input == pytest.approx(ref.uncached, abs=1e-6)
    assert bill.cache_write == pytest.approx(ref.write, abs=1e-6)
    assert bill.cache_read == pytest.approx(ref.read, abs=1e-6)
