"""The drain's timing rules and the parsers it relies on (pure, no processes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentdeploy.serving.node.cloud import demand_data
from agentdeploy.serving.node.drain import (
    HOOK_HEARTBEAT_EXTRA_S,
    DrainTiming,
    default_drain_budget_s,
    exit_wait_deadline,
    sigterm_deadline,
    stop_reason,
)
from agentdeploy.serving.node.notices import (
    parse_rebalance,
    parse_spot_notice,
    parse_target_lifecycle_state,
    scale_in_notice,
)
from agentdeploy.serving.prometheus import sum_samples

T = DrainTiming(shutdown_timeout_s=90, margin_s=10, settle_s=5)
NOTICE = 1_000_120.0  # the instance goes at this epoch second
START = 1_000_000.0  # the notice was seen 120 s before


def test_sigterm_deadline_leaves_vllm_its_drain_and_the_margin() -> None:
    assert sigterm_deadline(NOTICE, T) == NOTICE - 90 - 10


@pytest.mark.parametrize(
    "now, in_flight, expected",
    [
        (START + 1, 3, None),  # busy, plenty of time: keep waiting
        (START + 1, 0, None),  # idle but the load balancer may not have seen the 503 yet
        (START + 5, 0, "idle"),
        (START + 19.9, 7, None),
        (START + 20, 7, "deadline"),  # 120 - 90 - 10: SIGTERM even with requests in flight
        (START + 10, None, None),  # count unreadable (busy vLLM): keep waiting
        (START + 30, None, "deadline"),
    ],
)
def test_stop_reason(now: float, in_flight: int | None, expected: str | None) -> None:
    assert stop_reason(now, START, NOTICE, in_flight, T) == expected


def test_vllm_gone_needs_no_waiting() -> None:
    assert stop_reason(START + 1, START, NOTICE, None, T, vllm_down=True) == "vllm-down"


def test_notice_already_too_close_stops_at_once() -> None:
    assert stop_reason(START, START, START + 12, 4, DrainTiming(10, 5, 1)) == "deadline"


def test_exit_wait_never_passes_the_notice() -> None:
    assert exit_wait_deadline(START + 20, NOTICE, T) == NOTICE - 5
    assert exit_wait_deadline(START, START + 1000, DrainTiming(10, 5, 1)) == START + 15


def test_spot_notice_parsing() -> None:
    n = parse_spot_notice('{"action": "terminate", "time": "2026-11-23T19:02:00Z"}')
    assert n.action == "terminate"
    assert n.time == datetime(2026, 11, 23, 19, 2, tzinfo=UTC)
    assert n.to_dict() == {"kind": "spot", "action": "terminate", "time": "2026-11-23T19:02:00Z"}
    assert parse_rebalance('{"noticeTime": "2026-11-23T19:00:00Z"}').minute == 0
    for bad in ('{"action": "terminate"}', "[]", '{"action": "stop", "time": "soon"}'):
        with pytest.raises(ValueError):
            parse_spot_notice(bad)


@pytest.mark.parametrize("state", [None, "InService", "Standby", "Detached", "Warmed:Terminated", "terminated"])
def test_only_a_terminated_target_state_is_a_scale_in(state: str | None) -> None:
    # None is IMDS's 404: not in an Auto Scaling group (or no such path): never drain on it.
    assert scale_in_notice(state, START, 115) is None


def test_scale_in_notice_deadline_is_the_drain_budget() -> None:
    n = scale_in_notice("Terminated", START, 115)
    assert n is not None
    assert (n.kind, n.action) == ("scale-in", "terminate")
    assert n.deadline_epoch == START + 115
    assert n.to_dict()["kind"] == "scale-in"
    # With the default timing the drain still waits for in-flight requests before SIGTERM.
    assert stop_reason(START + 1, START, n.deadline_epoch, 2, T) is None
    assert stop_reason(START + 15, START, n.deadline_epoch, 2, T) == "deadline"


def test_target_lifecycle_state_parsing() -> None:
    assert parse_target_lifecycle_state("Terminated\n") == "Terminated"
    for bad in ("", "  ", "In Service"):
        with pytest.raises(ValueError):
            parse_target_lifecycle_state(bad)


def test_default_drain_budget_ends_inside_the_hooks_heartbeat_timeout() -> None:
    budget = default_drain_budget_s(shutdown_timeout_s=90, notice_poll_s=5)
    assert budget == 115
    heartbeat = 90 + HOOK_HEARTBEAT_EXTRA_S
    # Seen up to one poll after the hook started, done by the budget's end: before the timeout.
    assert 5 + budget <= heartbeat
    n = scale_in_notice("Terminated", START, budget)
    assert n is not None
    assert exit_wait_deadline(START + 20, n.deadline_epoch, T) < START + budget


def test_heartbeat_allowance_matches_what_the_fleet_sets() -> None:
    """The drain budget is only right while the fleet's drain hook waits shutdown_timeout_s plus
    the agent's allowance: the hook the stack creates is read back, not its source text."""
    from agentdeploy.planner.build import build_plan
    from agentdeploy.planner.spec import load_decision_file
    from agentdeploy.stacks.scaling_rules import fleet_rules

    example = Path(__file__).resolve().parents[2] / "examples" / "high-volume-router.yaml"
    fleets = [a.fleet for a in build_plan(load_decision_file(example)).agents if a.fleet is not None]
    assert fleets, "the example plans no fleet any more: pick one that does"
    for fleet in fleets:
        drain = [h for h in fleet_rules(fleet).hooks if h.transition == "autoscaling:EC2_INSTANCE_TERMINATING"]
        assert len(drain) == 1
        assert drain[0].timeout_s == fleet.shutdown_timeout_s + HOOK_HEARTBEAT_EXTRA_S


VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama-3.2-3b"} 3.0
vllm:num_requests_running{engine="1",model_name="llama-3.2-3b"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama-3.2-3b"} 4.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="llama-3.2-3b",reason="capacity"} 9.0
vllm:prefix_cache_hits_total{engine="0",model_name="llama-3.2-3b"} 120.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama-3.2-3b"} NaN
process_open_fds 31.0
"""


def test_sum_samples_adds_label_sets_and_matches_names_exactly() -> None:
    got = sum_samples(VLLM_METRICS, ["vllm:num_requests_running", "vllm:num_requests_waiting",
                                     "vllm:kv_cache_usage_perc", "vllm:absent"])
    assert got == {"vllm:num_requests_running": 5.0, "vllm:num_requests_waiting": 4.0}
    assert sum_samples("process_open_fds 31", ["process_open_fds"]) == {"process_open_fds": 31.0}


def test_demand_is_waiting_plus_running_under_the_agreed_names() -> None:
    data = {d.name: d.value for d in demand_data(waiting=4, running=5)}
    assert data == {"QueueDepth": 4, "InFlight": 5, "Demand": 9}


def test_demand_takes_vllms_load_count_when_its_gauges_lag() -> None:
    # Gauges still at zero while the front end holds eight requests: busy, not idle.
    lagging = {d.name: d.value for d in demand_data(waiting=0, running=0, server_load=8)}
    assert lagging == {"QueueDepth": 0, "InFlight": 8, "Demand": 8}
    # /load below the gauges (a stream's last bytes already out): the gauges stand.
    ahead = {d.name: d.value for d in demand_data(waiting=4, running=5, server_load=6)}
    assert ahead == {"QueueDepth": 4, "InFlight": 5, "Demand": 9}
