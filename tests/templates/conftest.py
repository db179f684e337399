from __future__ import annotations

import pytest

from agentdeploy.planner.plan import FleetPlan


@pytest.fixture
def fleet() -> FleetPlan:
    return FleetPlan(
        open_model="llama-3.1-8b", hf_repo="meta-llama/Llama-3.1-8B-Instruct", served_model_name="llama-3.1-8b",
        instance_type="g6.xlarge", instance_types=["g6.xlarge", "g6.2xlarge", "g5.xlarge"], gpu="L4",
        on_demand_base_capacity=1, on_demand_percentage_above_base=20, min_replicas=0, max_replicas=4,
        peak_replicas=3, average_replicas=1.5, idle_minutes=15, active_hours_per_day=12,
        max_concurrency_per_replica=16, target_queue_per_replica=4.0, max_model_len=16384, cold_start_s=360,
        hourly_usd_on_demand=0.8048, hourly_usd_spot=0.32,
    )
