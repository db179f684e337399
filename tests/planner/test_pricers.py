"""The planner's fast paths give the plain model's numbers to the last bit.

`deploy plan` prices with pricers.py (volume-free parts worked out once per option), bills a
conversation with `BillPlan` (the turn loop's constant terms worked out once), and skips
pricing what provably cannot be the cheapest (fleet_choice.py, `cheapest_priced`, the bounds in
the break-even scan and in `with_months`). Each is held here to the straightforward computation
it replaces, on random agents covering turns, history, prefixes around the caching minimum,
active hours, ramps, pins and volumes, with exact equality (==), never a tolerance.
"""

from __future__ import annotations

import math
import random

import pytest
import yaml

from agentdeploy.planner import load_catalog, load_decision_file
from agentdeploy.planner.agent_context import AgentContext
from agentdeploy.planner.breakeven import break_even
from agentdeploy.planner.caching import OPTIONS, CacheOption, Hits, TokenBill, conversation_bill
from agentdeploy.planner.cost import price_bill
from agentdeploy.planner.fleet import fits, fleet_cost, prefill_rate, shape_fleet
from agentdeploy.planner.fleet_choice import cheapest_fleets, year_floor
from agentdeploy.planner.options import (
    GpuOption,
    api_months_under,
    api_with_months,
    best_api_option,
    build_gpu_option,
    cheapest_priced,
    fleet_month_floor,
    hits_at,
    never_cached,
    with_months,
)
from agentdeploy.planner.pricers import ApiPricer, FleetPricer
from agentdeploy.planner.traffic import traffic_for

from .conftest import decision_doc

CATALOG = load_catalog(include_home=False)
MODELS = list(CATALOG.claude_models.values())


def reference_bill(S: int, In: int, Out: int, T: int, resend: bool, minimum: int, option: CacheOption, first: float, own_live: float,
                   batch: bool) -> TokenBill:
    """The per-turn loop `conversation_bill` ran before `BillPlan` (commit bd3d171), unchanged."""
    static_cacheable = option.enabled and S >= minimum and S > 0
    own = 0.0 if batch else own_live
    uncached = write = read = 0.0
    static_hits = conv_hits = 0.0
    prev_written = False
    for k in range(1, T + 1):
        history = (k - 1) * (In + Out) if resend else 0
        lead = 0 if static_cacheable else S
        dynamic = lead + history + In
        conv_cacheable = option.conversation and not batch and T > 1 and (S + history + In) >= minimum
        reads_own = conv_cacheable and prev_written and resend and k > 1
        p_own = own if reads_own else 0.0
        if static_cacheable:
            p_static = first if (k == 1 or batch) else 1.0 - (1.0 - own) * (1.0 - first)
            read += p_static * S
            write += (1 - p_static) * S
            static_hits += p_static
        if reads_own:
            read += p_own * (dynamic - Out - In)
            write += p_own * (Out + In) + (1 - p_own) * dynamic
            conv_hits += p_own
        elif conv_cacheable:
            write += dynamic
        else:
            uncached += dynamic
        prev_written = conv_cacheable
    return TokenBill(uncached, write, read, float(Out * T), static_hits / T if static_cacheable else 0.0,
                     conv_hits / (T - 1) if option.conversation and T > 1 and not batch else 0.0)


def cheapest_over_the_year(ctx: AgentContext, options: list[GpuOption]) -> list[GpuOption]:
    """The plain walk `cheapest_fleets` must agree with (commit bd3d171's, every fleet priced first):
    by `year_floor`, pricing months until a floor is not under the cheapest year found."""
    priced: list[GpuOption] = []
    best = math.inf
    for option in sorted(options, key=lambda o: year_floor(ctx, o)):
        if year_floor(ctx, option) >= best:
            break
        full = with_months(ctx, option)
        assert full is not None
        priced.append(full)
        best = min(best, full.year_usd)
    return priced


def random_agent(rng: random.Random) -> dict:
    launch = rng.choice([3.0, 40, 900, 12_000, 250_000, 3_000_000])
    latency = rng.choice([{"p95_s": 4, "audience": "interactive"}, {"p95_s": 25, "audience": "interactive"},
                          {"p95_s": 120, "audience": "backend"}, {"audience": "batch"}])
    profile: dict = {"turns": rng.choice([1, 2, 3, 5, 8]), "input_tokens_per_turn": rng.randint(50, 6000),
                     "output_tokens_per_turn": rng.randint(10, 2000), "static_prefix_tokens": rng.choice([0, 600, 1024, 2048, 4096, 9000]),
                     "resend_history": rng.random() < 0.8}
    if rng.random() < 0.3:
        profile["turn_gap_s"] = rng.choice([5.0, 120.0, 1800.0])
        profile["turn_gap_cv"] = rng.choice([0.0, 0.5, 2.0])
    volume: dict = {"conversations_per_month": launch, "conversations_per_month_12m": launch * rng.choice([0.5, 1, 3, 40]),
                    "ramp": rng.choice(["linear", "geometric", "step"])}
    if rng.random() < 0.5:
        volume["active_hours_per_day"] = rng.choice([6.0, 10.0, 23.5])
        volume["peak_factor"] = rng.choice([1.0, 2.5, 6.0])
    doc: dict = {"latency": latency, "quality": {"wrong_answer_cost": rng.choice(["low", "medium", "high"]), "task": rng.choice(
        ["routing", "classification", "extraction", "qa", "reasoning", "generation"])}, "volume": volume, "profile": profile}
    if rng.random() < 0.15:
        doc["overrides"] = {"cache": rng.choice(["off", "5m", "1h"])}
    return doc


@pytest.fixture(scope="module")
def contexts(tmp_path_factory) -> list[AgentContext]:
    rng = random.Random(20261202)
    agents = {f"a{i}": random_agent(rng) for i in range(120)}
    path = tmp_path_factory.mktemp("pricers") / "decisions.yaml"
    path.write_text(yaml.safe_dump(decision_doc(agents)))
    spec = load_decision_file(path)
    return [AgentContext.of(name, agent, spec, CATALOG, 1.0) for name, agent in spec.agents.items()]


def volumes(ctx: AgentContext) -> list[float]:
    return [ctx.launch_v, ctx.m12_v, 1.0, 37.5, 1234.5, 98_765.0, 4.2e6]


def test_bill_plan_is_the_per_turn_loop(contexts):
    rng = random.Random(7)
    for ctx in contexts:
        p = ctx.agent.profile
        for model in MODELS[:3]:
            for option in OPTIONS:
                for batch in (False, True):
                    for first, own in [(0.0, 0.0), (1.0, 1.0), (rng.random(), rng.random()), (rng.random(), 0.0)]:
                        expected = reference_bill(p.static_prefix_tokens, p.input_tokens_per_turn, p.output_tokens_per_turn, p.turns,
                                                  p.resend_history, model.min_cacheable_tokens, option, first, own, batch)
                        assert conversation_bill(p, model, option, Hits(first, own), batch=batch) == expected


def test_api_pricer_is_hits_bill_and_price(contexts):
    for ctx in contexts:
        for model in MODELS[:3]:
            for option in OPTIONS:
                for batch in (False, True):
                    pricer = ApiPricer(ctx.agent, model, option, CATALOG, batch=batch)
                    for v in volumes(ctx):
                        hits = hits_at(ctx.agent, option, CATALOG, v, batch=batch)
                        p = ctx.agent.profile
                        bill = reference_bill(p.static_prefix_tokens, p.input_tokens_per_turn, p.output_tokens_per_turn, p.turns,
                                              p.resend_history, model.min_cacheable_tokens, option, hits.first, hits.own, batch)
                        month = price_bill(bill, model, option, batch=batch, conversations=v)
                        assert pricer.hits(v) == hits
                        assert pricer.month(v) == (month, bill)
                        assert pricer.total(v) == month.total
                        assert v * pricer.max_per_conversation * (1 + 1e-9) + 1e-6 >= month.total
                        assert v * pricer.min_per_conversation * (1 - 1e-9) - 1e-6 <= month.total
                        if never_cached(ctx.agent, model, option, batch):
                            assert bill.cache_write == bill.cache_read == 0


def test_fleet_pricer_is_traffic_shape_and_cost(contexts):
    a = CATALOG.assumptions
    assert contexts[0].ops_overhead == 500.0
    for ctx in contexts[:60]:
        for om in CATALOG.open_models.values():
            for inst in CATALOG.gpu_instances.values():
                if not fits(om, inst):
                    continue
                perf = inst.perf[om.size_class]
                pricer = FleetPricer(ctx.agent, om, inst, CATALOG, 500.0, 15)
                for v in volumes(ctx):
                    traffic = traffic_for(ctx.agent, v, a.days_per_month)
                    shape = shape_fleet(ctx.agent, perf, traffic, a, 15, prefill_rate(perf, inst, om, a), inst.cold_start_s)
                    cost = fleet_cost(ctx.agent, inst, shape, a, 321.5, 500.0, traffic)
                    assert pricer.month(v, 321.5) == (cost, shape)
                    assert pricer.total_and_estimate(v, 321.5) == (cost.total, shape.estimate)
                    assert pricer.total(v, 321.5) == cost.total
                    assert pricer.base_at(v) == shape.base_replicas
                    assert cost.total >= fleet_month_floor(ctx, inst, shape.base_replicas)  # ctx.ops_overhead is the 500.0 priced here


def test_fleet_walk_prices_what_pricing_every_fleet_would_choose(contexts):
    """`cheapest_fleets` skips fleets by bounds; `cheapest_over_the_year` over every fleet is the plain walk."""
    checked = 0
    for ctx in contexts:
        if ctx.audience == "batch":
            continue
        fallback = best_api_option(ctx.agent, "claude-haiku-4-5", CATALOG.claude_models["claude-haiku-4-5"], CATALOG, ctx.launch_v, ctx.m12_v,
                                   batch=False)
        candidates = [(o, i) for o, om in CATALOG.open_models.items() for i, inst in CATALOG.gpu_instances.items() if fits(om, inst)]
        options = [build_gpu_option(ctx, o, i, fallback) for o, i in candidates]
        within = [o for o in options if ctx.measure == "none" or o.estimate.measured(ctx.measure) <= (ctx.ceiling or math.inf)]
        plain = cheapest_over_the_year(ctx, within)
        fast, _ = cheapest_fleets(ctx, candidates, fallback, every=False)
        assert bool(fast) == bool(within)
        if plain:
            best_plain = min(plain, key=lambda o: o.year_usd)
            best_fast = min(fast, key=lambda o: o.year_usd)
            assert (best_fast.open_id, best_fast.instance_type, best_fast.months) == (best_plain.open_id, best_plain.instance_type, best_plain.months)
            checked += 1
        _, misses = cheapest_fleets(ctx, candidates, fallback, every=True)
        assert [(m.open_id, m.instance_type) for m in misses] == [(o.open_id, o.instance_type) for o in options if o not in within]
    assert checked > 20


def test_with_months_gives_up_only_on_a_year_over_the_best(contexts):
    gave_up = 0
    for ctx in contexts:
        if ctx.audience == "batch":
            continue
        fallback = best_api_option(ctx.agent, "claude-haiku-4-5", CATALOG.claude_models["claude-haiku-4-5"], CATALOG, ctx.launch_v, ctx.m12_v,
                                   batch=False)
        for o, i in [("llama-3.1-8b", "g6.xlarge"), ("llama-3.1-8b", "g5.2xlarge"), ("qwen2.5-32b", "p5.4xlarge")]:
            option = build_gpu_option(ctx, o, i, fallback)
            full = with_months(ctx, option)
            assert full is not None
            for best in (full.year_usd * 0.5, full.year_usd * 0.999, full.year_usd, full.year_usd * 1.5):
                early = with_months(ctx, option, best)
                if early is None:
                    gave_up += 1
                    assert full.year_usd > best
                else:
                    assert early.months == full.months
    assert gave_up > 10


def test_api_months_give_up_only_on_a_year_over_the_best(contexts):
    gave_up = 0
    for ctx in contexts:
        for m in ("claude-haiku-4-5", "claude-opus-4-7"):
            option = best_api_option(ctx.agent, m, CATALOG.claude_models[m], CATALOG, ctx.launch_v, ctx.m12_v, batch=False, months=False)
            full = api_with_months(ctx.agent, option, ctx.launch_v, ctx.m12_v)
            for best in (full.year_usd * 0.5, full.year_usd * 0.999, full.year_usd, full.year_usd * 1.5):
                early = api_months_under(ctx.agent, option, ctx.launch_v, ctx.m12_v, best)
                if early is None:
                    gave_up += 1
                    assert full.year_usd > best
                else:
                    assert early.months == full.months
    assert gave_up > 10


def test_api_options_left_unpriced_could_not_be_the_cheapest(contexts):
    for ctx in contexts:
        options = [best_api_option(ctx.agent, m, cm, CATALOG, ctx.launch_v, ctx.m12_v, batch=False, months=False)
                   for m, cm in CATALOG.claude_models.items()]
        every = [api_with_months(ctx.agent, o, ctx.launch_v, ctx.m12_v) for o in options]
        priced = cheapest_priced(ctx.agent, options, ctx.launch_v, ctx.m12_v)
        cheapest = min(every, key=lambda o: o.year_usd)
        assert min(priced, key=lambda o: o.year_usd).model_id == cheapest.model_id
        assert all(p.months == next(e for e in every if e.model_id == p.model_id).months for p in priced)


def test_break_even_scan_skipping_the_api_below_the_floor_finds_the_same_volume(contexts):
    found = 0
    for ctx in contexts:
        model = CATALOG.claude_models["claude-sonnet-4-6"]
        api = ApiPricer(ctx.agent, model, OPTIONS[2], CATALOG, batch=False)
        fleet = FleetPricer(ctx.agent, CATALOG.open_models["llama-3.1-8b"], CATALOG.gpu_instances["g6.xlarge"], CATALOG, 500.0, 15)

        def gpu(v: float, api: ApiPricer = api, fleet: FleetPricer = fleet) -> float:
            return fleet.total(v, api.total(v))

        floor = fleet_month_floor(ctx, CATALOG.gpu_instances["g6.xlarge"])
        plain = break_even(api.total, gpu, gpu_floor=floor)
        assert break_even(api.total, gpu, gpu_floor=floor, api_rate=api.max_per_conversation) == plain
        found += plain is not None
    assert found > 20
