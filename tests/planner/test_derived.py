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


def infra_shares(path) -> tuple[dict[str, AgentPlan], dict[str, float]]:
    from agentdeploy.planner.infra import shares

    plan = build_plan(load_decision_file(path), CATALOG)
    assert plan.infrastructure is not None
    return {a.name: a for a in plan.agents}, shares(plan.infrastructure, plan.agents)


def test_a_fleets_budget_splits_into_claude_metered_and_aws_billed_shares():
    """Claude (the fallback) to the gateway; GPU hours plus the agent's share of the stack's fixed
    cost to AWS; the ops overhead is people's time, on neither meter."""
    agents, share = infra_shares(EXAMPLES / "high-volume-router.yaml")
    assert agents["ticket-router"].route == "gpu"
    for a in agents.values():
        items, budget = a.cost.items["launch"], a.budget
        claude = items.total - items.gpu_spot - items.gpu_on_demand - items.ops_overhead
        aws = items.gpu_spot + items.gpu_on_demand + share[a.name]
        assert budget.monthly_usd == max(1, -(-(items.total + share[a.name]) * 1.25 // 1)), f"{a.name}: (launch + share) x headroom"
        assert budget.gateway_usd == pytest.approx(round(max(1.0, budget.monthly_usd * claude / (claude + aws)), 2)), f"{a.name}: gateway share"
        assert budget.aws_usd == pytest.approx(round(budget.monthly_usd * aws / (claude + aws), 2)), f"{a.name}: AWS share"
    fleet = agents["ticket-router"].budget
    assert fleet.aws_usd > fleet.gateway_usd, "a fleet's GPU hours outweigh its fallback"


def test_an_api_agents_budget_is_claude_spend_plus_its_share_of_the_alarms():
    agents, share = infra_shares(EXAMPLES / "service-business.yaml")
    for a in agents.values():
        assert a.route in ("api", "batch")
        assert a.budget.aws_usd > 0 and share[a.name] == pytest.approx(0.30), f"{a.name}: three spend alarms at $0.10, AWS-billed"
        assert a.budget.gateway_usd + a.budget.aws_usd == pytest.approx(a.budget.monthly_usd, abs=0.011)
        assert a.budget.gateway_usd > 0.9 * a.budget.monthly_usd, f"{a.name}: the gateway meters nearly all of it"


def test_pace_alarms_pace_the_gateways_share_over_the_catalogs_days_per_month(write_decision):
    assumptions = {"days_per_month": 28.0, "source": "EST test: a February", "as_of": "2026-01-01"}
    doc = decision_doc({"a": agent_doc(budget_usd_per_month=140)}, budget_thresholds_pct=[50, 100])
    doc["catalog"] = {"assumptions": assumptions}
    spec = load_decision_file(write_decision(doc))
    budget = build_plan(spec).agents[0].budget
    assert budget.monthly_usd == 140
    assert budget.gateway_usd + budget.aws_usd == pytest.approx(140)
    assert [(p.pct, p.daily_usd) for p in budget.pace] == [(pct, round(budget.gateway_usd * pct / 100 / 28.0, 4)) for pct in (50, 100)]

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


def test_self_hosted_first_token_budget_leaves_the_fallback_its_p95_inside_the_ceiling(write_decision):
    full = router_plan()["ticket-router"]
    assert full.latency.measure == "full_response"
    assert full.fallback_model == "claude-haiku-4-5"
    haiku = CATALOG.claude_models["claude-haiku-4-5"]
    # the fallback's p95 first token grows with the prompt: 1,500 static + 900 input tokens
    full_fallback = haiku.ttft_p95_s + 2.4 * haiku.ttft_s_per_1k_input_tokens
    # a full-response ceiling also has the answer to stream: at most half of it for the first token
    assert full.latency.self_hosted_ttft_s == pytest.approx(max(0.25, min(2.5 / 2, 2.5 - full_fallback)), abs=1e-3)
    first = build_plan(load_decision_file(write_decision(decision_doc(
        {"a": agent_doc(latency={"p95_s": 20, "audience": "interactive"}, overrides={"model": "llama-3.1-8b"})})))).agents[0]
    assert first.latency.measure == "first_token"
    assert first.fallback_model
    fallback = CATALOG.claude_models[first.fallback_model]
    assert first.latency.self_hosted_ttft_s == pytest.approx(20 - (fallback.ttft_p95_s + 2.0 * fallback.ttft_s_per_1k_input_tokens), abs=1e-3)


def test_api_and_batch_agents_have_no_self_hosted_first_token_budget():
    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"), CATALOG)
    assert {a.route for a in plan.agents} == {"api", "batch"}
    assert all(a.latency.self_hosted_ttft_s is None for a in plan.agents)
