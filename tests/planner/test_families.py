"""A fleet's instance types span GPU families that fit the model, each with catalog data, and
the plan says why when only one family can serve it (issue 10, item 4)."""

from __future__ import annotations

import pytest

from agentdeploy.planner import build_plan, load_decision_file
from agentdeploy.planner.catalog import load_catalog
from agentdeploy.planner.families import MAX_PRICE_RATIO, family, spread, why_not
from agentdeploy.planner.fleet import fits
from tests.stacks.harness import EXAMPLES


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(include_home=False)


def _gpu_agents():
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        plan = build_plan(load_decision_file(path))
        out += [(path.name, a) for a in plan.agents if a.fleet]
    return out


GPU_AGENTS = _gpu_agents()


def test_the_examples_have_gpu_agents():
    assert GPU_AGENTS


@pytest.mark.parametrize(("example", "agent"), GPU_AGENTS, ids=[f"{e}:{a.name}" for e, a in GPU_AGENTS])
def test_example_fleets_span_two_families_that_fit(catalog, example, agent):
    fleet = agent.fleet
    assert fleet.instance_types[0] == fleet.instance_type
    assert len({family(t) for t in fleet.instance_types}) >= 2, fleet.instance_types
    model = catalog.open_models[fleet.open_model]
    chosen = catalog.gpu_instances[fleet.instance_type]
    prices = [catalog.gpu_instances[t].on_demand_usd_per_hour for t in fleet.instance_types[1:]]
    assert prices == sorted(prices)  # cheapest first after the chosen one
    for t in fleet.instance_types:
        inst = catalog.gpu_instances[t]  # every type has sourced catalog data
        assert inst.source and inst.as_of
        assert fits(model, inst)
        assert inst.gpu_count == chosen.gpu_count
        assert inst.on_demand_usd_per_hour <= MAX_PRICE_RATIO * chosen.on_demand_usd_per_hour
        # at least as fast on every figure the sizing reads: the plan's capacity holds on it
        assert why_not(catalog, model, fleet.instance_type, t) == [] or t == fleet.instance_type
    assert any(w.startswith("Instance types") and "families" in w for w in agent.why)


def test_a_model_only_one_family_fits_says_why(catalog):
    model = catalog.open_models["qwen2.5-32b"]  # 72 GB: only the 80 GB H100 among one-GPU types
    s = spread(catalog, model, "p5.4xlarge")
    assert s.families == ["p5"]
    assert "one family only" in s.reason
    assert "g6e.xlarge: 48 GB of GPU memory, 72 GB needed" in s.reason


def test_a_slower_family_stays_out_and_is_named(catalog):
    model = catalog.open_models["llama-3.3-70b"]
    faster = spread(catalog, model, "p4d.24xlarge")
    assert faster.types == ["p4d.24xlarge", "p5.48xlarge"]  # H100s stand in for A100s
    slower = spread(catalog, model, "p5.48xlarge")
    assert slower.types == ["p5.48xlarge"]  # A100s would not hold the H100 plan's sizing
    assert "p4d.24xlarge: knee concurrency 32 < 64" in slower.reason


def test_a_pricier_type_beyond_the_ratio_stays_out(catalog):
    model = catalog.open_models["llama-3.2-3b"]
    s = spread(catalog, model, "g6.xlarge")
    assert "p5.4xlarge" not in s.types  # faster, but 8.5x the price the plan assumed
    assert why_not(catalog, model, "g6.xlarge", "p5.4xlarge")[0].endswith(f"over {MAX_PRICE_RATIO:g}x g6.xlarge's $0.8048/h")
