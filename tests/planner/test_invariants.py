"""Property-based checks of the planner's invariants over generated agents."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentdeploy.errors import Infeasible
from agentdeploy.planner import build_plan, load_catalog
from agentdeploy.planner.caching import OPTIONS, CacheOption
from agentdeploy.planner.curves import curve_cache, curves_for
from agentdeploy.planner.options import api_cost_at
from agentdeploy.planner.quality import quality_floor
from agentdeploy.planner.spec import Spec

from .cachesim import true_cost

CATALOG = load_catalog(include_home=False)

latency = st.one_of(
    st.builds(lambda p: {"p95_s": p, "audience": "interactive"}, st.sampled_from([0.8, 1.5, 2, 3, 5, 10, 20])),
    st.builds(lambda p: {"p95_s": p, "audience": "backend"}, st.sampled_from([1, 2.5, 5, 30, 120, 7200])),
    st.just({"audience": "batch"}),
)
quality = st.fixed_dictionaries({
    "wrong_answer_cost": st.sampled_from(["low", "medium", "high", "critical"]),
    "task": st.sampled_from(["routing", "classification", "extraction", "qa", "reasoning", "generation"]),
})


@st.composite
def agents(draw):
    now = draw(st.floats(min_value=10, max_value=3_000_000))
    profile = {
        "turns": draw(st.integers(1, 8)),
        "input_tokens_per_turn": draw(st.integers(10, 12_000)),
        "output_tokens_per_turn": draw(st.integers(5, 2_000)),
        "static_prefix_tokens": draw(st.sampled_from([0, 500, 2048, 4096, 6000, 20_000])),
        "turn_gap_s": draw(st.sampled_from([5.0, 60.0, 600.0, 7200.0])),
        # exact gaps: the request-by-request replay (4b) times turns exactly; the spread of gaps is
        # held to the Monte-Carlo replay in test_cache_model.py
        "turn_gap_cv": 0.0,
    }
    return {
        "latency": draw(latency),
        "quality": draw(quality),
        "volume": {
            "conversations_per_month": now,
            "conversations_per_month_12m": now * draw(st.floats(1, 20)),
            "active_hours_per_day": draw(st.sampled_from([1, 8, 14, 24])),
            "peak_factor": draw(st.floats(1, 5)),
        },
        "profile": profile,
    }


def spec_of(agent: dict) -> Spec:
    return Spec.model_validate({"stack": {"name": "prop"}, "agents": {"a": agent}})


AUDIT_CONVERSATION = {  # turn 1 under Haiku's 4,096 minimum, turn 2 over it (the audit's repro)
    "latency": {"p95_s": 10, "audience": "interactive"},
    "quality": {"wrong_answer_cost": "medium", "task": "qa"},
    "volume": {"conversations_per_month": 1000, "conversations_per_month_12m": 1000, "active_hours_per_day": 24, "peak_factor": 3},
    "profile": {"turns": 2, "input_tokens_per_turn": 2000, "output_tokens_per_turn": 1500, "static_prefix_tokens": 0, "turn_gap_s": 30.0, "turn_gap_cv": 0.0},
}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agents())
@example(AUDIT_CONVERSATION)
# Found by Hypothesis: a GPU plan whose API reference keeps a 1 h cache warm; both its curves
# fall in total between some volumes.
@example({"latency": {"p95_s": 0.8, "audience": "interactive"}, "quality": {"wrong_answer_cost": "low", "task": "routing"},
          "volume": {"conversations_per_month": 10.0, "conversations_per_month_12m": 10.0, "active_hours_per_day": 1, "peak_factor": 1.0},
          "profile": {"turns": 3, "input_tokens_per_turn": 10, "output_tokens_per_turn": 5, "static_prefix_tokens": 4096, "turn_gap_s": 7200.0, "turn_gap_cv": 0.0}})
def test_plan_invariants(doc):
    spec = spec_of(doc)
    agent = spec.agents["a"]
    try:
        plan = build_plan(spec, CATALOG)
    except Infeasible as err:
        # infeasible is allowed only with a named corner to relax
        assert any("relax" in d for d in err.details)
        return
    a = plan.agents[0]
    floor = quality_floor(agent.quality)
    # 1. the chosen model meets the quality floor (and so does a GPU agent's fallback)
    if a.route == "gpu":
        assert CATALOG.open_models[a.model].task_tiers[agent.quality.task] >= floor
        assert CATALOG.claude_models[a.fallback_model].quality_tier >= floor
    else:
        assert CATALOG.claude_models[a.model].quality_tier >= floor
    # 2. ... and the latency ceiling
    if a.latency.measure != "none":
        assert a.latency.p95_estimate_s <= a.latency.ceiling_s + 1e-9
    # 3. batch only for agents that tolerate hours
    if a.route == "batch":
        assert agent.latency.resolved_audience != "interactive"
        assert agent.latency.p95_s is None or agent.latency.p95_s >= 3600
    # 4. caching never raises the projected cost
    if a.route in ("api", "batch") and a.cache.enabled:
        model = CATALOG.claude_models[a.model]
        for key, volume in (("launch", a.volume["launch"]), ("month_12", a.volume["month_12"])):
            off, _ = api_cost_at(agent, model, OPTIONS[0], CATALOG, volume, batch=a.route == "batch")
            assert a.cost.monthly_usd.model_dump()[key] <= off.total + 0.01
    # 4b. ... nor the true cost: replayed request by request (tests/planner/cachesim.py), the
    #     chosen caching costs no more than none, and the projection is what the replay bills
    if a.route in ("api", "batch"):
        model = CATALOG.claude_models[a.model]
        chosen = CacheOption(a.cache.ttl, "conversation" in a.cache.breakpoints)
        batch = a.route == "batch"
        for key, volume in (("launch", a.volume["launch"]), ("month_12", a.volume["month_12"])):
            true = true_cost(agent, model, chosen, CATALOG, volume, batch=batch)
            assert true <= true_cost(agent, model, OPTIONS[0], CATALOG, volume, batch=batch) + 0.01
            assert a.cost.monthly_usd.model_dump()[key] == pytest.approx(true, rel=1e-6, abs=0.01)
    # 5. cost grows with volume where no cache is priced. The curves' caching is the plan's,
    #    or for a GPU plan its API reference's (which the fallback share uses too); with a cache,
    #    denser traffic keeps it warm and more conversations can really cost less in total, as
    #    test_plan_cost_monotone_in_scale explains (Hypothesis found such GPU plans here too).
    api, gpu = curves_for(agent, spec, CATALOG, a)
    vols = [a.volume["launch"] * f for f in (0.5, 1, 2, 4, 8)]
    if curve_cache(agent, CATALOG, a).ttl is None:
        for curve in filter(None, (api, gpu)):
            costs = [curve(v) for v in vols]
            assert all(x <= y + 1e-9 for x, y in itertools.pairwise(costs)), costs
    assert a.cost.monthly_usd.launch <= a.cost.monthly_usd.month_12 + 0.01
    # 6. the break-even volume is where the two curves meet
    be = a.break_even_conversations_per_month
    if be is not None and gpu is not None and be > 10:
        # (the plan rounds the volume to 0.1 conversation: allow that much)
        assert gpu(be) <= api(be) * (1 + 1e-3) + 1e-6
        # just below it (the bisection's tolerance) the fleet is dearer: a crossing, not a point inside a
        # cheaper stretch (the fleet's steps, boot hours and spill can make the curves cross more than once)
        assert gpu(be * (1 - 2e-4)) > api(be * (1 - 2e-4)) or be <= 10.1
    # 7. max_tokens covers the p99 output
    if a.route != "gpu":
        assert a.max_tokens >= min(agent.profile.p99_output, CATALOG.claude_models[a.model].max_output_tokens)
    # 8. a fleet's numbers are consistent
    if a.fleet:
        f = a.fleet
        assert 0 <= f.min_replicas <= f.peak_replicas <= f.max_replicas
        assert f.on_demand_base_capacity <= f.max_replicas


@settings(max_examples=60, deadline=None)
@given(agents(), st.floats(1.01, 10))
def test_plan_cost_monotone_in_scale(doc, factor):
    spec = spec_of(doc)
    try:
        small = build_plan(spec, CATALOG)
        big = build_plan(spec, CATALOG, scale=factor)
    except Infeasible:
        return
    a, b = small.agents[0], big.agents[0]
    # Monotone only without caching: with a cache, denser traffic keeps it warm, so the cold
    # arrivals that pay for writes (rate x e^(-rate x TTL) an hour) FALL once rate x TTL > 1 —
    # more conversations can really cost less. Hypothesis found such a case (4,096-token prefix,
    # ~1 conversation per active hour, 1 h TTL); the planner is right to price it that way.
    same = (a.route, a.model, a.cache.enabled, a.fleet is None) == (b.route, b.model, b.cache.enabled, b.fleet is None)
    if same and not a.cache.enabled:
        assert b.cost.monthly_usd.month_12 >= a.cost.monthly_usd.month_12 - 0.01
    # the planner never picks something dearer than the option it had at the smaller volume
    assert b.cost.monthly_usd.month_12 <= a.cost.monthly_usd.month_12 * factor * 1.5 + 1


def test_infeasible_names_corner_and_amount():
    spec = spec_of({
        "latency": {"p95_s": 1.5, "audience": "interactive"},
        "quality": {"wrong_answer_cost": "critical", "task": "reasoning"},
        "volume": {"conversations_per_month": 100},
        "profile": {"input_tokens_per_turn": 100, "output_tokens_per_turn": 100},
    })
    try:
        build_plan(spec, CATALOG)
    except Infeasible as err:
        text = " ".join(err.details)
        assert "raise latency.p95_s from 1.5 to 3.6 s" in text
        assert "relax quality: accept tier 3 (claude-haiku-4-5)" in text
        assert err.exit_code == 3
    else:
        raise AssertionError("a 1.5 s ceiling with an Opus-only floor must be infeasible")


def test_budget_too_small_names_cost_corner():
    spec = spec_of({
        "latency": {"p95_s": 10, "audience": "interactive"},
        "quality": {"wrong_answer_cost": "medium", "task": "reasoning"},
        "volume": {"conversations_per_month": 10_000},
        "profile": {"input_tokens_per_turn": 2000, "output_tokens_per_turn": 800},
        "budget_usd_per_month": 50,
    })
    try:
        build_plan(spec, CATALOG)
    except Infeasible as err:
        text = " ".join(err.details)
        # Sonnet: 10,000 x (2000 x $3/M + 800 x $15/M) = $180
        assert "raise budget_usd_per_month by $130.00 to 180" in text
    else:
        raise AssertionError("a $50 budget for a $180 agent must be infeasible")


def test_evals_override_tier_rules():
    doc = {
        "latency": {"p95_s": 10, "audience": "interactive"},
        "quality": {"wrong_answer_cost": "medium", "task": "reasoning",
                    "evals": {"scores": {"claude-haiku-4-5": 0.93, "claude-sonnet-4-6": 0.95}, "pass_threshold": 0.9}},
        "volume": {"conversations_per_month": 1000},
        "profile": {"input_tokens_per_turn": 2000, "output_tokens_per_turn": 800},
    }
    plan = build_plan(spec_of(doc), CATALOG)
    assert plan.agents[0].model == "claude-haiku-4-5"  # tier rules alone would demand Sonnet
    assert plan.agents[0].quality.source == "evals"
    doc["quality"]["evals"]["scores"]["claude-haiku-4-5"] = 0.5
    assert build_plan(spec_of(doc), CATALOG).agents[0].model == "claude-sonnet-4-6"
    assert math.isfinite(plan.agents[0].cost.monthly_usd.launch)
