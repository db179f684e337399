"""The autoscaler's target (FleetPlan.target_queue_per_replica) is the per-replica load the
plan's replica count is sized for, so target tracking runs the fleet the plan prices."""

from __future__ import annotations

import math

import pytest

from agentdeploy.planner.fleet import Replica, replica_counts, target_in_flight


@pytest.mark.parametrize(("replica", "expected"), [
    (Replica(capacity=16, duration_s=2.0, compute_s=0.1), 16.0),   # slots run out first: the cap
    (Replica(capacity=16, duration_s=1.5, compute_s=0.35), 4.28),  # compute saturates at 4.29: below
    (Replica(capacity=1, duration_s=0.5, compute_s=0.5), 1.0),     # never under one request
])
def test_target_is_the_cap_or_the_compute_saturation_whichever_is_lower(replica: Replica, expected: float) -> None:
    assert target_in_flight(replica) == expected


@pytest.mark.parametrize("rps", [0.3, 2.0, 7.5, 40.0])
@pytest.mark.parametrize("replica", [Replica(16, 2.0, 0.1), Replica(16, 1.5, 0.35), Replica(8, 3.0, 0.2)])
def test_tracking_the_target_needs_no_more_replicas_than_the_plan_counts(replica: Replica, rps: float) -> None:
    """Target tracking holds in-flight / replicas at the target: at a steady rate it runs
    ceil(rps x duration / target) replicas, which is what `replica_counts` plans (within one,
    from the target's rounding down to 0.01)."""
    base, _ = replica_counts(replica, rps, rps)
    tracked = math.ceil(rps * replica.duration_s / target_in_flight(replica))
    assert base <= tracked <= base + 1
    assert target_in_flight(replica) <= min(replica.capacity, replica.duration_s / replica.compute_s)
