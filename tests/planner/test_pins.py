"""Overrides: every pin is honoured or refused with a reason, and shows in `why`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.errors import Infeasible, InvalidInput
from agentdeploy.planner import build_plan, load_catalog, load_decision_file

from .conftest import agent_doc, decision_doc

CATALOG = load_catalog(include_home=False)
HAIKU_IN, HAIKU_OUT = 1e-6, 5e-6
CLASSIFY = {"wrong_answer_cost": "medium", "task": "classification"}


def plan_one(write_decision, **agent):
    return build_plan(load_decision_file(write_decision(decision_doc({"a": agent_doc(**agent)}))), CATALOG).agents[0]


def error_of(write_decision, **agent) -> InvalidInput | Infeasible:
    path = write_decision(decision_doc({"a": agent_doc(**agent)}))
    with pytest.raises((InvalidInput, Infeasible)) as err:
        build_plan(load_decision_file(path), CATALOG)
    return err.value


def test_pinned_open_model_means_self_hosting(write_decision):
    # unpinned, this agent is $6/month on Haiku; the pin must not be ignored for being dearer
    a = plan_one(write_decision, quality=CLASSIFY, overrides={"model": "llama-3.1-8b"})
    assert (a.route, a.model, a.provider, a.fallback_model) == ("gpu", "llama-3.1-8b", "vllm", "claude-haiku-4-5")
    assert "model llama-3.1-8b pinned in overrides (an open-weight model: self-hosted, route gpu)" in a.why
    # cheapest fleet: one g6.xlarge, on-demand (interactive, 10 s ceiling), 24 h x 30.4 days at $0.8048/h,
    # plus the catalog's $500 ops overhead; round-the-clock traffic never starts cold and an
    # on-demand replica is never interrupted, so nothing falls back to Haiku
    assert a.fleet.instance_type == "g6.xlarge"
    assert a.fleet.on_demand_base_capacity == 1
    assert a.cost.monthly_usd.launch == pytest.approx(24 * 30.4 * 0.8048 + 500, abs=0.01)
    assert a.cost.items["launch"].fallback_api == 0
    assert any(w.startswith("ops overhead $500 per fleet-month") for w in a.why)


def test_pinned_open_model_that_misses_the_ceiling_names_the_corner(write_decision):
    err = error_of(write_decision, quality=CLASSIFY, latency={"p95_s": 0.05, "audience": "interactive"}, overrides={"model": "llama-3.1-8b"})
    assert err.exit_code == 3
    text = " ".join(err.details)
    # fastest: p5.4xlarge at low load, 0.07 s x 0.3 + the 2,000-token prompt's prefill at
    # 989 TFLOPS x 0.4 / (2 x 8e9) = 24,725 tok/s (0.081 s) + 0.05 s network = 0.152 s
    assert "llama-3.1-8b is pinned (self-hosted)" in text
    assert "fastest: llama-3.1-8b on p5.4xlarge, 0.15 s" in text
    assert "raise latency.p95_s from 0.05 to 0.2 s, or unpin overrides.model" in text


def test_pinned_open_model_runs_a_batch_agent_on_the_fleet(write_decision):
    a = plan_one(write_decision, quality=CLASSIFY, latency={"audience": "batch"}, overrides={"model": "llama-3.2-3b"})
    assert (a.route, a.model) == ("gpu", "llama-3.2-3b")


def test_route_pins(write_decision):
    api = plan_one(write_decision, latency={"audience": "batch"}, overrides={"route": "api"})
    assert (api.route, api.batch) == ("api", False)
    assert "route api pinned in overrides" in api.why
    gpu = plan_one(write_decision, quality=CLASSIFY, overrides={"route": "gpu"})
    assert gpu.route == "gpu"
    assert "route gpu pinned in overrides" in gpu.why
    err = error_of(write_decision, overrides={"route": "batch"})  # interactive, 10 s ceiling
    assert err.exit_code == 3
    assert "raise latency.p95_s to at least 3600" in " ".join(err.details)


def test_claude_model_pin_shows_in_why(write_decision):
    a = plan_one(write_decision, overrides={"model": "claude-opus-4-7"})
    assert a.model == "claude-opus-4-7"
    assert "model claude-opus-4-7 pinned in overrides" in a.why
    # 1000 x (2000 x $5/M + 800 x $25/M)
    assert a.cost.monthly_usd.launch == pytest.approx(30.0)


def test_cache_pins(write_decision):
    prefix = {"turns": 1, "input_tokens_per_turn": 500, "output_tokens_per_turn": 500, "static_prefix_tokens": 10_000}
    busy = {"conversations_per_month": 100_000}
    auto = plan_one(write_decision, volume=busy, profile=prefix, overrides={"model": "claude-sonnet-4-6"})
    other = "1h" if auto.cache.ttl == "5m" else "5m"
    pinned = plan_one(write_decision, volume=busy, profile=prefix, overrides={"model": "claude-sonnet-4-6", "cache": other})
    assert pinned.cache.ttl == other
    assert f"prompt caching pinned to {other} in overrides" in pinned.why
    assert pinned.cost.monthly_usd.launch > auto.cost.monthly_usd.launch  # the pin costs money, and the plan shows it
    off = plan_one(write_decision, volume=busy, profile=prefix, overrides={"model": "claude-sonnet-4-6", "cache": "off"})
    assert off.cache.enabled is False
    assert "prompt caching off: pinned off in overrides" in off.why


def test_5m_cache_pin_on_a_batch_agent_is_invalid_with_line(write_decision):
    path = write_decision(decision_doc({"a": agent_doc(latency={"audience": "batch"}, overrides={"cache": "5m"})}))
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "cache: 5m" in text)
    assert f"{path}:{line}: agents.a.overrides.cache: '5m' cannot apply to a batch agent" in result.output
    assert "valid here: auto, off, 1h" in result.output


def test_5m_cache_pin_on_a_slow_backend_keeps_it_realtime(write_decision):
    a = plan_one(write_decision, latency={"p95_s": 7200, "audience": "backend"}, overrides={"cache": "5m"})
    assert a.route == "api"
    assert any("rules out the Batch API" in w for w in a.why)


def test_instance_type_pin_means_that_fleet(write_decision):
    a = plan_one(write_decision, quality=CLASSIFY, overrides={"instance_type": "g6e.xlarge"})
    assert a.route == "gpu"
    assert a.fleet.instance_type == "g6e.xlarge"
    assert "instance type g6e.xlarge pinned in overrides (route gpu)" in a.why


@pytest.mark.parametrize("overrides, says", [
    ({"instance_type": "g6.xlarge", "model": "claude-haiku-4-5"}, "Claude model 'claude-haiku-4-5' cannot be self-hosted"),
    ({"instance_type": "g6.xlarge", "route": "api"}, "pins a GPU fleet but route 'api' is pinned"),
    ({"instance_type": "g6.xlarge", "model": "llama-3.3-70b"}, "instance types it runs on: p4d.24xlarge, p5.48xlarge"),
    ({"model": "llama-3.1-8b", "route": "batch"}, "can only run on route 'gpu'"),
])
def test_contradicting_pins_are_invalid(write_decision, overrides, says):
    err = error_of(write_decision, quality=CLASSIFY, overrides=overrides)
    assert err.exit_code == 2
    assert says in " ".join(err.details)
