"""Costs reproduced by hand from the published prices (catalog-facts 1.2, 3.1)."""

from __future__ import annotations

import math

import pytest

from agentdeploy.planner import build_plan, load_decision_file

from .conftest import EXAMPLES, agent_doc, decision_doc

HAIKU_IN, HAIKU_OUT = 1e-6, 5e-6
SONNET_IN, SONNET_OUT = 3e-6, 15e-6


def plan_one(write_decision, **agent):
    return build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc(**agent)})))).agents[0]


def test_realtime_haiku_by_hand(write_decision):
    a = plan_one(write_decision)  # qa / medium -> floor 2 -> Haiku is the cheapest qualifying model
    assert (a.route, a.model) == ("api", "claude-haiku-4-5")
    expected = 1000 * (2000 * HAIKU_IN + 800 * HAIKU_OUT)  # = $6.00
    assert a.cost.monthly_usd.launch == pytest.approx(6.00)
    assert a.cost.monthly_usd.launch == pytest.approx(expected)
    assert a.cost.per_conversation_usd == pytest.approx(0.006)
    items = a.cost.items["launch"]
    assert items.uncached_input == pytest.approx(2.0)
    assert items.output == pytest.approx(4.0)
    assert a.cache.enabled is False


def test_batch_sonnet_by_hand(write_decision):
    a = plan_one(write_decision, latency={"audience": "batch"}, quality={"wrong_answer_cost": "medium", "task": "generation"})
    assert (a.route, a.model, a.batch, a.streaming) == ("batch", "claude-sonnet-4-6", True, False)
    gross = 1000 * (2000 * SONNET_IN + 800 * SONNET_OUT)  # $18
    assert a.cost.items["launch"].batch_discount == pytest.approx(-gross / 2)
    assert a.cost.monthly_usd.launch == pytest.approx(9.00)


def test_cached_prefix_by_hand(write_decision):
    volume = 100_000
    a = plan_one(
        write_decision,
        overrides={"model": "claude-sonnet-4-6"},
        latency={"p95_s": 30, "audience": "backend"},
        volume={"conversations_per_month": volume},
        profile={"turns": 1, "input_tokens_per_turn": 500, "output_tokens_per_turn": 500, "static_prefix_tokens": 10_000},
    )
    rps = volume / (24 * 3600 * 30.4)
    S = 10_000

    def per_conv(ttl_s, write_price):
        h = 1 - math.exp(-rps * ttl_s)
        return S * (h * 0.3e-6 + (1 - h) * write_price) + 500 * SONNET_IN + 500 * SONNET_OUT

    off = S * SONNET_IN + 500 * SONNET_IN + 500 * SONNET_OUT
    five, hour = per_conv(300, 3.75e-6), per_conv(3600, 6e-6)
    best = min(off, five, hour)
    assert a.cache.enabled
    assert a.cache.ttl == ("5m" if five < hour else "1h")
    assert a.cost.monthly_usd.launch == pytest.approx(best * volume, rel=1e-4)
    assert a.cost.monthly_usd.launch < off * volume


def test_prefix_below_minimum_is_not_cached(write_decision):
    a = plan_one(write_decision, profile={"turns": 3, "input_tokens_per_turn": 100, "output_tokens_per_turn": 100, "static_prefix_tokens": 1000})
    assert a.model == "claude-haiku-4-5"
    assert a.cache.enabled is False
    assert any("under claude-haiku-4-5's 4096-token minimum" in w for w in a.why)


def test_gpu_fleet_by_hand():
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"))
    a = plan.agent("ticket-router")
    assert a.route == "gpu"
    assert a.fleet is not None
    assert a.fallback_model == "claude-haiku-4-5"
    m12 = a.cost.items["month_12"]
    # one g6.xlarge replica, all spot, 24 h x 30.4 days at $0.32/h
    assert a.fleet.instance_type == "g6.xlarge"
    assert m12.gpu_spot == pytest.approx(24 * 30.4 * 0.32)
    # fallback share from the interruption model: round-the-clock traffic never starts cold and one
    # replica has no busy-hour spill; 10% spot interruptions a month over 729.6 spot hours, each
    # losing the replica for its 360 s cold start, of the Haiku bill
    haiku_m12 = 2_000_000 * (2400 * HAIKU_IN + 20 * HAIKU_OUT)
    assert a.cost.api_monthly_usd.month_12 == pytest.approx(haiku_m12)
    hours = 24 * 30.4
    assert m12.fallback_api == pytest.approx(hours * 0.1 / 730 * 360 / 3600 / hours * haiku_m12, rel=1e-3)
    assert m12.ops_overhead == 500  # the catalog's sourced default
    assert a.break_even_conversations_per_month is not None
    assert a.break_even_conversations_per_month < a.volume["launch"]


def test_baseline_and_saving():
    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"))
    assert plan.baseline.model == "claude-sonnet-4-6"
    infra = plan.infrastructure
    assert infra is not None
    assert infra.gateway.deploy is False
    assert infra.items == {"spend_alarms": 0.9}
    assert plan.totals.infrastructure_usd == 0.9
    assert plan.totals.monthly_usd.launch == pytest.approx(sum(a.cost.monthly_usd.launch for a in plan.agents) + 0.9, abs=0.02)
    assert plan.baseline.infrastructure_usd == 0.9  # the naive setup still pays its spend alarms
    assert plan.baseline.saving_usd.launch == pytest.approx(plan.baseline.monthly_usd.launch - plan.totals.monthly_usd.launch, abs=0.02)
    assert plan.baseline.saving_usd.month_12 > 0
    routes = {a.name: a.route for a in plan.agents}
    assert routes == {"intake": "api", "sales-brief": "api", "marketing-drafts": "batch"}
    assert plan.agent("intake").model == "claude-haiku-4-5"
    assert plan.agent("sales-brief").model == "claude-sonnet-4-6"


def test_scale_what_if_doubles_token_costs():
    spec = load_decision_file(EXAMPLES / "service-business.yaml")
    one, two = build_plan(spec), build_plan(spec, scale=2.0)
    assert two.volume_scale == 2.0
    assert two.agent("sales-brief").cost.monthly_usd.launch == pytest.approx(2 * one.agent("sales-brief").cost.monthly_usd.launch, rel=0.01)


@pytest.mark.parametrize("latency, streaming", [
    ({"p95_s": 10, "audience": "interactive"}, True),
    ({"p95_s": 30, "audience": "backend"}, False),
    ({"audience": "batch"}, False),
])
def test_streaming_only_where_a_person_reads_live(write_decision, latency, streaming):
    a = plan_one(write_decision, latency=latency)
    assert a.streaming is streaming
    assert ("streaming on: a person reads the answer as it arrives" in a.why) is streaming


def test_budget_from_projection_and_headroom(write_decision):
    doc = decision_doc({"a": agent_doc()}, budget_headroom=1.5, budget_thresholds_pct=[90, 50, 50], budget_policy="block")
    a = build_plan(load_decision_file(write_decision(doc))).agents[0]
    # launch $6.00 (see test_realtime_haiku_by_hand) + $0.20 share of the stack's fixed cost (two
    # spend alarms at $0.10) x 1.5 headroom = ceil($9.30) = $10; thresholds sorted, duplicates dropped
    assert (a.budget.monthly_usd, a.budget.user_set, a.budget.policy) == (10.0, False, "block")
    assert a.budget.thresholds_pct == [50, 90]
    assert a.budget.aws_usd == pytest.approx(round(10 * 0.2 / 6.2, 2))
    doc = decision_doc({"a": agent_doc()})  # default headroom 1.25, three alarms: ceil($6.30 x 1.25) = $8
    assert build_plan(load_decision_file(write_decision(doc))).agents[0].budget.monthly_usd == 8.0


def test_user_budget_and_agent_policy_win(write_decision):
    a = plan_one(write_decision, budget_usd_per_month=20, budget_policy="degrade")
    assert (a.budget.monthly_usd, a.budget.user_set, a.budget.policy) == (20.0, True, "degrade")
    assert a.degrade_model is None  # Haiku is already the cheapest model meeting the floor
    assert any("budget $20/month (set by you)" in w and "policy degrade" in w for w in a.why)
