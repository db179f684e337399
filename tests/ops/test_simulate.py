"""`deploy simulate`: the issue's acceptance rules for the example's GPU agents, each shown able to
fail (the same rule against the definitions the operations review found wrong), and the
planner's projection checked against the simulation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentdeploy.ops.simulate import AgentInputs, RunResult, agent_inputs, run
from agentdeploy.ops.simulate.report import COST_TOLERANCE, checks, monthly_usd
from agentdeploy.planner import load_decision_file
from agentdeploy.planner.planfile import reviewed_plan
from agentdeploy.stacks.scaling_rules import FleetRules

ROOT = Path(__file__).resolve().parents[2]
ROUTER = ROOT / "examples" / "high-volume-router.yaml"

#: An office-hours router: 8 active hours a day, so every day starts with a cold fleet and ends
#: with a scale to zero; a flat day (peak factor 1) so the planner's average-rate model and the
#: simulated day see the same arrival rate at the morning's cold start.
OFFICE = """\
version: 1
stack: {name: office-router, region: us-east-1}
agents:
  ticket-router:
    latency: {p95_s: 2.5, audience: backend}
    quality: {wrong_answer_cost: low, task: routing}
    volume: {conversations_per_month: 600000, active_hours_per_day: 8, peak_factor: 1}
    profile: {turns: 1, input_tokens_per_turn: 900, output_tokens_per_turn: 20, static_prefix_tokens: 1500,
              output_tokens_p99: 40}
"""


#: An interactive agent pinned to a fleet of several replicas: target tracking decides its size.
BUSY = """\
version: 1
stack: {name: busy-router, region: us-east-1}
agents:
  chat-helper:
    latency: {p95_s: 8, audience: interactive}
    quality: {wrong_answer_cost: low, task: routing}
    volume: {conversations_per_month: 120000, active_hours_per_day: 12, peak_factor: 2}
    profile: {turns: 4, input_tokens_per_turn: 1200, output_tokens_per_turn: 300, static_prefix_tokens: 1500,
              output_tokens_p99: 800}
    overrides: {route: gpu}
"""


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Plans from the built-in catalog only (no spot-price refresh in the user's home)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AGENTDEPLOY_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()


def _inputs(path: Path) -> list[AgentInputs]:
    plan, catalog = reviewed_plan(path)
    return agent_inputs(plan, load_decision_file(path), catalog)


@pytest.fixture(scope="module")
def router() -> AgentInputs:
    inputs = _inputs(ROUTER)
    assert [i.name for i in inputs] == ["ticket-router"]  # the example's one GPU agent
    return inputs[0]


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> AgentInputs:
    path = tmp_path_factory.mktemp("office") / "office.yaml"
    path.write_text(OFFICE)
    (inp,) = _inputs(path)
    assert inp.fleet.min_replicas == 0 and inp.weights.count(0.0) == 16  # scales to zero every night
    return inp


def _rules(inp: AgentInputs, **changes: object) -> AgentInputs:
    return dataclasses.replace(inp, rules=dataclasses.replace(inp.rules, **changes))


def _check(inp: AgentInputs, r: RunResult) -> bool:
    (c,) = checks(inp, [r])
    return c.ok


# --- the four acceptance rules, on the example's GPU agent ------------------------------------
def test_steady_trickle_never_churns_through_zero(router: AgentInputs) -> None:
    r = run(router, "steady-trickle", 1, seed=1)
    assert r.requests == 1440
    assert r.zero_cycles <= 2 and _check(router, r)
    # the first wake only: every minute's request until the first node is routable
    first = math.ceil((router.fleet.cold_start_s + router.routable_s) / 60)
    assert r.fallback == {"cold_start": first, "overload": 0, "spot_loss": 0, "no_healthy_node": 0}


def test_the_trickle_rule_fails_with_one_point_sample_a_minute(router: AgentInputs) -> None:
    """The old node agent (review defect 6): one reading a minute, published as that sample."""
    old = dataclasses.replace(router.rules.publishing, poll_interval_s=60.0, published_as="sample")
    r = run(_rules(router, publishing=old), "steady-trickle", 1, seed=1)
    assert r.zero_cycles > 2 and not _check(router, r)


def test_metrics_outage_never_scales_a_busy_fleet_to_zero(router: AgentInputs) -> None:
    r = run(router, "metrics-outage", 1, seed=1)
    assert r.alerts == {"silent": 1}  # the outage happened, and someone was told
    assert r.busy_scale_to_zero == 0 and r.scale_in == 0 and _check(router, r)
    assert r.fallback_requests == 0


def test_the_outage_rule_fails_when_missing_data_breaches(router: AgentInputs) -> None:
    """The old idle alarm (review defect 5): missing node data counted as idle."""
    alarms = tuple(dataclasses.replace(a, treat_missing_data="breaching") if a.key == "idle" else a
                   for a in router.rules.alarms)
    r = run(_rules(router, alarms=alarms), "metrics-outage", 1, seed=1)
    assert r.busy_scale_to_zero >= 1 and not _check(router, r)


def test_cold_burst_is_served_within_the_cold_start_plus_a_minute(router: AgentInputs) -> None:
    r = run(router, "cold-burst", 1, seed=1)
    assert len(r.wake_s) == 8  # a burst every 3 hours, each against a fleet at zero
    assert r.zero_cycles == 7  # it did scale to zero between bursts
    assert max(r.wake_s) <= router.fleet.cold_start_s + 60 and _check(router, r)
    assert min(r.wake_s) >= router.fleet.cold_start_s  # nothing serves before the model has loaded


def test_without_the_gateway_wake_the_alarm_path_is_too_slow_for_the_rule(router: AgentInputs) -> None:
    """The alarm path alone (publish, then a minute's evaluation) still wakes the fleet, a
    minute or two later than the rule allows: the gateway's own wake is what meets it."""
    r = run(dataclasses.replace(router, wake=None), "cold-burst", 1, seed=1)
    assert len(r.wake_s) == 8
    assert router.fleet.cold_start_s + 60 < max(r.wake_s) <= router.fleet.cold_start_s + 180
    assert not _check(router, r)


def test_declared_month_within_fifteen_percent_of_the_plan(router: AgentInputs) -> None:
    r = run(router, "declared", 1, seed=1)
    planned = router.planned.total_usd
    assert planned == pytest.approx(233.49, abs=0.01)  # GPU spot + fallback API at launch, from the plan
    assert abs(monthly_usd(router, r) / planned - 1) <= COST_TOLERANCE and _check(router, r)


def test_the_cost_rule_fails_for_a_fleet_that_never_scales_in(office: AgentInputs) -> None:
    """Without its idle alarm the office fleet runs all night: about three times the plan."""
    r = run(_rules(office, alarms=tuple(a for a in office.rules.alarms if a.key != "idle")), "declared", 2, seed=1)
    assert monthly_usd(office, r) > 2 * office.planned.total_usd and not _check(office, r)


# --- the planner against the simulation ---------------------------------------------------------
def test_target_tracking_runs_the_fleet_the_plan_sized(tmp_path: Path) -> None:
    """The autoscaler's target is the per-replica load the plan sizes for: the concurrency cap,
    or less where the replica's compute saturates first (never above it, or tracking would pack
    replicas past what they can compute); tracking it costs what the plan says."""
    path = tmp_path / "busy.yaml"
    path.write_text(BUSY)
    (busy,) = _inputs(path)
    fleet = busy.fleet
    assert fleet.target_queue_per_replica <= fleet.max_concurrency_per_replica
    assert fleet.target_queue_per_replica <= busy.service_s / busy.compute_s
    r = run(busy, "declared", 2, seed=1)
    assert r.scale_out > 0  # several replicas come and go with the day
    assert abs(monthly_usd(busy, r) / busy.planned.total_usd - 1) <= COST_TOLERANCE and _check(busy, r)



def test_planner_gpu_hours_and_fallback_share_agree_with_the_simulation(office: AgentInputs) -> None:
    """Tolerances: GPU hours within 5% (the plan leaves out the alarm's minute of lag and the
    drain, about 2 minutes of an 8.35-hour day); fallback share within 15% relative (the share
    is the morning's cold start, ~250 Poisson arrivals a day: over 3 days one standard deviation
    is ~4%, and the plan counts no lag between the first request and the launch)."""
    r = run(office, "declared", 3, seed=1)
    month = office.days_per_month / r.days
    assert r.gpu_hours["spot"] * month == pytest.approx(office.planned.spot_hours, rel=0.05)
    assert r.gpu_hours["on_demand"] == office.planned.on_demand_hours == 0
    share = r.fallback_requests / r.requests
    assert share == pytest.approx(office.planned.fallback_share, rel=0.15)
    assert set(k for k, v in r.fallback.items() if v) == {"cold_start"}
    assert r.zero_cycles == 2  # one scale to zero a night, woken each morning


def test_planner_and_simulation_agree_on_the_always_on_router(router: AgentInputs) -> None:
    """24 active hours: one replica all month, and a fallback share that is only the plan's
    expected spot losses (0.1 a month: absolute tolerance 0.1 percentage point)."""
    r = run(router, "declared", 2, seed=1)
    month = router.days_per_month / r.days
    assert r.gpu_hours["spot"] * month == pytest.approx(router.planned.spot_hours, rel=0.01)
    assert r.fallback_requests / r.requests == pytest.approx(router.planned.fallback_share, abs=0.001)


def test_spot_wave_falls_back_for_spot_loss_until_the_replacement_serves(router: AgentInputs) -> None:
    r = run(router, "spot-wave", 1, seed=1)
    lost = r.fallback["spot_loss"]
    # the busiest hour's rate over the cold start of the replacement (launched at the notice)
    busiest = router.requests_per_day * max(router.weights) / sum(router.weights) / 3600
    assert lost == pytest.approx(busiest * router.fleet.cold_start_s, rel=0.25)
    assert sum(r.fallback.values()) == lost
    assert r.gpu_hours["spot"] > 24.0  # the notice's 2 minutes overlap the replacement's boot


def test_same_seed_same_result_other_seed_other_traffic(router: AgentInputs) -> None:
    a, b = run(router, "declared", 1, seed=7), run(router, "declared", 1, seed=7)
    assert a == b
    assert run(router, "declared", 1, seed=8).requests != a.requests


def test_rules_come_from_the_stack(router: AgentInputs) -> None:
    """The simulation runs the alarms the stack provisions, with the plan's idle window."""
    assert isinstance(router.rules, FleetRules)
    assert router.rules.alarm("idle").evaluation_periods == router.fleet.idle_minutes
    assert router.wake is not None and router.wake_source == "gateway config"
    # a node is routable after the target group's two 15-second checks and one discovery read
    assert router.routable_s == 30.0 + 5.0


def test_a_ready_hook_shorter_than_the_cold_start_never_serves(router: AgentInputs) -> None:
    """The ready hook's ABANDON: a node that cannot load within the hook's timeout is terminated
    and replaced, forever; the fleet bills GPU hours and serves nobody (the cold-burst rule fails)."""
    hooks = tuple(dataclasses.replace(h, timeout_s=300) if h.name == "ready" else h for h in router.rules.hooks)
    r = run(_rules(router, hooks=hooks), "cold-burst", 1, seed=1)
    assert r.fleet_served == 0 and r.wake_s == []
    assert r.gpu_hours["spot"] > 1.0
    assert not _check(router, r)


def test_spot_drought_brings_in_the_on_demand_standby_and_lets_it_go(router: AgentInputs) -> None:
    """No spot capacity for 2 hours from the busiest hour: the spot-starved alarm (10 minutes
    wanting capacity with none in service) fills the on-demand standby, which serves after its
    cold start; once spot capacity is back and serving, the alarm's OK empties the standby."""
    r = run(router, "spot-drought", 1, seed=1)
    busiest = router.requests_per_day * max(router.weights) / sum(router.weights) / 3600
    starved_s = router.rules.standby.starved_minutes * 60
    # the notice, the starved window and its evaluation, the standby's cold start
    assert r.fallback_requests <= busiest * (router.notice_s + starved_s + 120 + router.fleet.cold_start_s)
    assert set(k for k, v in r.fallback.items() if v) == {"spot_loss", "no_healthy_node"}
    assert 1.5 < r.gpu_hours["on_demand"] < 2.5  # the drought, not the rest of the day
    assert (r.scale_out, r.scale_in) == (1, 1)  # the standby's fill and empty; the spot group kept its capacity
