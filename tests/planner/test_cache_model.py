"""The per-conversation cache-hit model held to a Monte-Carlo replay of arrivals (within 2%),
and the plan items that follow from it: batch hits from the batch's size, prefill in first-token
time, the year's ramp and its switch point, the stack's fixed cost and the gateway decision."""

from __future__ import annotations

import pytest

from agentdeploy.planner import build_plan, load_catalog, load_decision_file
from agentdeploy.planner.caching import TTL_SECONDS, CacheOption, arrival_hits, batch_hit_rate, conversation_bill
from agentdeploy.planner.report import usd
from agentdeploy.planner.spec import Profile, decision_file_schema
from agentdeploy.planner.traffic import Traffic

from .cachemc import simulate
from .conftest import EXAMPLES, agent_doc, decision_doc

CATALOG = load_catalog(include_home=False)
SONNET = CATALOG.claude_models["claude-sonnet-4-6"]


@pytest.mark.parametrize("per_day, gap, ttl, cv, hours, turns, conv", [
    (3, 45, "5m", 1.0, 10, 4, True),
    (30, 200, "5m", 1.0, 10, 4, False),
    (300, 20, "1h", 0.0, 24, 4, True),
    (30, 900, "1h", 1.0, 10, 4, True),
    (3, 20, "1h", 1.0, 24, 1, False),
    (300, 200, "5m", 0.0, 10, 4, True),
])
def test_closed_form_agrees_with_monte_carlo_within_2_percent(per_day, gap, ttl, cv, hours, turns, conv):
    profile = Profile(turns=turns, input_tokens_per_turn=800, output_tokens_per_turn=300, static_prefix_tokens=3000)
    option = CacheOption(ttl, conversation=conv)
    mc = simulate(profile, SONNET.min_cacheable_tokens, option, per_day=per_day, hours=hours, gap_mean=gap, gap_cv=cv, conversations=8000)
    month = per_day * 30.4
    hits = arrival_hits(profile, Traffic(month, month * turns, hours, 1.0, 0.0, 0.0, 30.4), TTL_SECONDS[ttl], gap, cv)
    bill = conversation_bill(profile, SONNET, option, hits)
    w = 1.25 if ttl == "5m" else 2.0
    simulated = mc.uncached + w * mc.write + 0.1 * mc.read
    closed = bill.uncached_input + w * bill.cache_write + 0.1 * bill.cache_read
    assert closed == pytest.approx(simulated, rel=0.02)


def test_batch_hits_come_from_the_batch_size():
    # ten requests run before any entry exists: a batch of 10 reads nothing, one of 40 reads 75%
    assert batch_hit_rate(10, 1, 10) == 0.0
    assert batch_hit_rate(40, 1, 10) == pytest.approx(0.75)


def test_service_business_meets_floors_and_beats_the_baseline_by_60_percent():
    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"), CATALOG)
    assert plan.baseline.saving_pct.launch >= 60
    assert plan.baseline.saving_pct.month_12 >= 60
    assert all(a.latency.p95_estimate_s <= (a.latency.ceiling_s or 1e12) for a in plan.agents)
    intake = plan.agent("intake")
    # launch month's hit rates per breakpoint are in the plan and the why-line
    assert 0 < intake.cache.first_turn_hit_rate < intake.cache.expected_hit_rate < 1
    assert any("launch month's expected hit rate: static prefix" in w and "conversation breakpoint" in w for w in intake.why)
    # API first token grows with the prompt: 6,000 + 3 x 270 + 150 tokens at 0.03 s per 1,000
    haiku = CATALOG.claude_models["claude-haiku-4-5"]
    assert intake.latency.ttft_p95_s == pytest.approx(haiku.ttft_p95_s + 6.96 * haiku.ttft_s_per_1k_input_tokens, abs=1e-3)
    # a small API-only stack whose budgets only alert runs no gateway, and says what that means
    assert plan.infrastructure is not None
    assert plan.infrastructure.gateway.deploy is False
    assert any("no run-time budget enforcement and no fallback" in w for w in plan.infrastructure.gateway.why)


def test_the_ramp_keeps_the_api_until_the_fleet_pays_and_says_when():
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"), CATALOG)
    drafts = plan.agent("answer-drafts")
    assert drafts.route == "api"
    assert drafts.switch is not None
    assert 2 <= drafts.switch.month <= 12
    assert drafts.switch.year_usd_saved > 0
    assert drafts.switch.conversations_per_month == drafts.break_even_conversations_per_month
    assert any(w.startswith("stay on claude-haiku-4-5 until about") and "then move to a fleet" in w for w in drafts.why)
    assert drafts.cost.year_usd == pytest.approx(sum(drafts.cost.months_usd), abs=0.05)
    assert len(drafts.cost.months_usd) == 12
    router = plan.agent("ticket-router")
    assert router.route == "gpu"
    assert plan.infrastructure is not None
    assert plan.infrastructure.gateway.deploy
    assert plan.totals.monthly_usd.launch == pytest.approx(plan.totals.agents_usd.launch + plan.infrastructure.monthly_usd, abs=0.01)


def test_a_long_prompt_rules_out_a_fleet_whose_prefill_misses_the_ceiling(write_decision):
    # 8,000-token prompt on an L4 with an 8B model: 8,000 / (121e12 x 0.4 / 16e9) = 2.6 s of prefill alone
    doc = decision_doc({"a": agent_doc(
        latency={"p95_s": 2.0, "audience": "interactive"}, quality={"wrong_answer_cost": "medium", "task": "classification"},
        profile={"turns": 1, "input_tokens_per_turn": 8000, "output_tokens_per_turn": 50}, overrides={"model": "llama-3.1-8b", "instance_type": "g6.xlarge"})})
    with pytest.raises(Exception) as err:
        build_plan(load_decision_file(write_decision(doc)), CATALOG)
    assert "no fleet meets the 2 s p95 first token ceiling" in " ".join(getattr(err.value, "details", []))


def test_small_things(write_decision):
    assert usd(-520.72) == "-$520.72"
    assert usd(1234.5) == "$1,234.50"
    assert decision_file_schema()["properties"]["agents"]["propertyNames"]["pattern"] == "^[a-z][a-z0-9-]{0,39}$"
    text = "version: 1\nstack: {name: t}\nagents:\n  a:\n    latency: {p95_s: 10}\n    quality: {wrong_answer_cost: low, task: qa}\n" \
        "    volume: {conversations_per_month: 100}\n    profile: {input_tokens_per_turn: 10, output_tokens_per_turn: 10}\n" \
        "    overrides: {cache: off}\n"
    spec = load_decision_file(write_decision(text))
    assert spec.agents["a"].overrides.cache == "off"


def test_chart_layout_marks_the_choice_and_keeps_markers_readable():
    from agentdeploy.planner.chart import axis_for, curve_labels, markers

    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"), CATALOG)
    router, drafts = plan.agent("ticket-router"), plan.agent("answer-drafts")
    assert curve_labels(router)[1].endswith("— chosen")
    assert curve_labels(drafts)[0].endswith("— chosen")
    assert [label for label, _ in markers(drafts)][:2] == ["launch", "12 mo"]
    assert markers(drafts)[2][0].startswith("switch (month")
    one = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"), CATALOG).agent("intake").model_copy(
        update={"volume": {"launch": 1500.0, "month_12": 1500.0}, "break_even_conversations_per_month": 600_000.0})
    assert [label for label, _ in markers(one)] == ["launch = 12 mo", "break-even 600,000"]
    axis = axis_for(one)
    assert axis.log and axis.low <= 750 and axis.high >= 1_200_000  # a far break-even turns the axis logarithmic


def test_boot_hours_are_billed_and_each_cold_day_falls_back(write_decision):
    doc = decision_doc({"a": agent_doc(
        quality={"wrong_answer_cost": "medium", "task": "classification"}, overrides={"model": "llama-3.1-8b", "instance_type": "g6.xlarge"},
        volume={"conversations_per_month": 1000, "active_hours_per_day": 10})})
    a = build_plan(load_decision_file(write_decision(doc)), CATALOG).agents[0]
    items = a.cost.items["launch"]
    # one on-demand replica (interactive, 10 s ceiling): 10 active hours + 15 idle minutes + the 360 s boot, 30.4 days
    assert items.gpu_on_demand == pytest.approx((10 + 0.25 + 0.1) * 30.4 * 0.8048, rel=1e-6)
    # the first 360 s of each 10-hour day go to Haiku while the replica boots: 1% of its $6.00
    assert items.fallback_api == pytest.approx(0.01 * 6.0, rel=1e-6)
    assert items.ops_overhead == 500


def test_baseline_keeps_each_agents_quality_floor(write_decision):
    doc = decision_doc({"a": agent_doc(quality={"wrong_answer_cost": "critical", "task": "reasoning"})})
    plan = build_plan(load_decision_file(write_decision(doc)), CATALOG)
    assert plan.agents[0].model == "claude-opus-4-7"
    assert plan.baseline.models == {"a": "claude-opus-4-7"}  # Sonnet, the middle tier, is under floor 5
    opus = 1000 * (2000 * 5e-6 + 800 * 25e-6)
    assert plan.baseline.monthly_usd.launch == pytest.approx(opus + plan.baseline.infrastructure_usd)
    assert plan.baseline.saving_pct.launch == pytest.approx(0.0)  # the same model, nothing cached: no saving, no loss


def test_one_hour_caching_chosen_where_it_is_cheaper_in_both_months(write_decision):
    # a long prefix and conversations ~20 minutes apart: 5-minute entries expire between them
    doc = decision_doc({"a": agent_doc(
        overrides={"model": "claude-sonnet-4-6"}, volume={"conversations_per_month": 1500, "conversations_per_month_12m": 2000, "active_hours_per_day": 10},
        profile={"turns": 1, "input_tokens_per_turn": 500, "output_tokens_per_turn": 300, "static_prefix_tokens": 20_000})})
    a = build_plan(load_decision_file(write_decision(doc)), CATALOG).agents[0]
    assert a.cache.ttl == "1h"
    from agentdeploy.planner.caching import CacheOption
    from agentdeploy.planner.options import api_cost_at

    agent = load_decision_file(write_decision(doc)).agents["a"]
    for volume in (1500, 2000):
        five = api_cost_at(agent, SONNET, CacheOption("5m"), CATALOG, volume, batch=False)[0].total
        hour = api_cost_at(agent, SONNET, CacheOption("1h"), CATALOG, volume, batch=False)[0].total
        assert hour < five


def test_the_gateway_is_deployed_where_enforcement_guards_more_than_it_costs(write_decision):
    from agentdeploy.planner.infra import gateway_items

    fixed = round(sum(gateway_items(CATALOG).values()) + 0.045 * 730, 2)
    busy = {"conversations_per_month": 100_000}  # Haiku, $600 a month: 20% of it is more than the gateway's fixed cost
    plan = build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc(volume=busy, budget_policy="block")}))), CATALOG)
    assert plan.infrastructure is not None
    assert plan.infrastructure.gateway.deploy
    assert plan.infrastructure.gateway.fixed_usd_per_month == fixed
    assert plan.infrastructure.monthly_usd == pytest.approx(fixed + 0.3, abs=0.011)  # + three spend alarms
    small = build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc(budget_policy="block")}), "small.yaml")), CATALOG)
    assert small.infrastructure is not None
    assert not small.infrastructure.gateway.deploy
    assert "guards at most" in small.infrastructure.gateway.why[0]
    pinned = build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc()}, gateway=True), "pinned.yaml")), CATALOG)
    assert pinned.infrastructure is not None
    assert pinned.infrastructure.gateway.deploy
    assert pinned.totals.infrastructure_usd == pytest.approx(fixed + 0.3, abs=0.011)
