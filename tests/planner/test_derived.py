"""Values the plan owns so that render, the stack and the gateway copy rather than recompute:
the budget's split between the gateway and AWS, the policy the gateway enforces, the daily
spend alarms, and a self-hosted attempt's first-token budget."""

from __future__ import annotations

import pytest

from agentdeploy.planner import build_plan, load_catalog, load_decision_file
from agentdeploy.planner.plan import AgentPlan

from .conftest import EXAMPLES, agent_doc, decision_doc

CATALOG = load_catalog(include_home=False)


def router_plan() -> dict[str, AgentPlan]:
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"), CATALOG)
    return {a.name: a for a in plan.agents}


def test_a_fleets_budget_splits_into_the_gateways_fallback_share_and_the_aws_gpu_share():
    agents = router_plan()
    assert {a.route for a in agents.values()} == {"gpu"}
    for a in agents.values():
        items, budget = a.cost.items["launch"], a.budget
        assert items.ops_overhead == 0, "the example has no ops overhead: the two shares are all of it"
        gateway_share = budget.monthly_usd * items.fallback_api / items.total
        aws_share = budget.monthly_usd * (items.gpu_spot + items.gpu_on_demand) / items.total
        assert budget.gateway_usd == pytest.approx(round(max(1.0, gateway_share), 2)), f"{a.name}: gateway share"
        assert budget.aws_usd == pytest.approx(round(aws_share, 2)), f"{a.name}: AWS share"
        assert budget.aws_usd > budget.gateway_usd, f"{a.name}: a fleet's GPU hours outweigh its fallback"
        if gateway_share >= 1.0:
            assert budget.gateway_usd + budget.aws_usd == pytest.approx(budget.monthly_usd, abs=0.011), f"{a.name}: shares sum to the budget"


def test_an_api_agents_whole_budget_is_the_gateways():
    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"), CATALOG)
    for a in plan.agents:
        assert a.route in ("api", "batch")
        assert a.budget.gateway_usd == a.budget.monthly_usd, f"{a.name}: gateway meters all of it"
        assert a.budget.aws_usd == 0.0, f"{a.name}: AWS bills nothing"


def test_pace_alarms_pace_the_gateways_share_over_the_catalogs_days_per_month(write_decision):
    assumptions = {"days_per_month": 28.0, "source": "EST test: a February", "as_of": "2026-01-01"}
    doc = decision_doc({"a": agent_doc(budget_usd_per_month=140)}, budget_thresholds_pct=[50, 100])
    doc["catalog"] = {"assumptions": assumptions}
    spec = load_decision_file(write_decision(doc))
    budget = build_plan(spec).agents[0].budget
    assert budget.gateway_usd == 140
    assert [(p.pct, p.daily_usd) for p in budget.pace] == [(50, 2.5), (100, 5.0)]

    for a in router_plan().values():
        days = CATALOG.assumptions.days_per_month
        expected = [(pct, round(a.budget.gateway_usd * pct / 100 / days, 4)) for pct in a.budget.thresholds_pct]
        assert [(p.pct, p.daily_usd) for p in a.budget.pace] == expected, f"{a.name}: paces the fallback share, not the whole budget"


def test_degrade_without_a_cheaper_model_becomes_block_at_the_gateway(write_decision):
    cheapest = write_decision(decision_doc({"a": agent_doc(budget_policy="degrade")}))
    a = build_plan(load_decision_file(cheapest)).agents[0]
    assert (a.model, a.degrade_model) == ("claude-haiku-4-5", None)
    assert a.budget.policy == "degrade", "the plan keeps what the user asked for"
    assert a.budget.gateway_policy == "block", "nothing cheaper to degrade to"

    pinned_opus = write_decision(decision_doc({"a": agent_doc(budget_policy="degrade", overrides={"model": "claude-opus-4-7"})}), "opus.yaml")
    b = build_plan(load_decision_file(pinned_opus)).agents[0]
    assert b.degrade_model is not None
    assert b.budget.gateway_policy == "degrade"


@pytest.mark.parametrize("policy", ["block", "alert"])
def test_other_policies_reach_the_gateway_unchanged(write_decision, policy):
    a = build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc(budget_policy=policy)})))).agents[0]
    assert a.budget.gateway_policy == policy


def test_self_hosted_first_token_budget_leaves_the_fallback_its_p95_inside_the_ceiling():
    agents = router_plan()
    full, first = agents["ticket-router"], agents["answer-drafts"]
    assert (full.latency.measure, first.latency.measure) == ("full_response", "first_token")
    assert full.fallback_model and first.fallback_model
    full_fallback = CATALOG.claude_models[full.fallback_model].ttft_p95_s
    first_fallback = CATALOG.claude_models[first.fallback_model].ttft_p95_s
    # a full-response ceiling also has the answer to stream: at most half of it for the first token
    assert full.latency.self_hosted_ttft_s == max(0.25, min(2.5 / 2, 2.5 - full_fallback))
    assert first.latency.self_hosted_ttft_s == max(0.25, 20 - first_fallback)
    assert first.latency.self_hosted_ttft_s == pytest.approx(20 - first_fallback)


def test_api_and_batch_agents_have_no_self_hosted_first_token_budget():
    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"), CATALOG)
    assert {a.route for a in plan.agents} == {"api", "batch"}
    assert all(a.latency.self_hosted_ttft_s is None for a in plan.agents)
