"""Self-hosted fleet sizing and its monthly cost at a given volume.

Concurrency follows Little's law (arrival rate x request duration); each replica is run at a
share of its knee concurrency so the p95 holds. GPU hours follow the day's shape: replicas for
the average active hour all active hours, extra replicas for the busy part, and an idle tail
before scale-to-zero. Latency-critical interactive agents keep their first replica on-demand
(a spot loss then costs capacity, not the whole fleet); everything above runs on spot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentdeploy.planner.catalog import Assumptions, GpuInstance, InstancePerf, OpenModel
from agentdeploy.planner.cost import gpu_items
from agentdeploy.planner.latency import Estimate, gpu_estimate, per_stream_speed
from agentdeploy.planner.plan import CostItems
from agentdeploy.planner.spec import AgentDecision
from agentdeploy.planner.traffic import Traffic

#: Share of active hours the busiest-hour replica count is needed (EST).
PEAK_SHARE_OF_DAY = 0.25
#: Interactive agents with a ceiling at or under this keep an on-demand base replica.
ON_DEMAND_FLOOR_CEILING_S = 10.0


@dataclass(frozen=True)
class FleetShape:
    capacity_per_replica: int
    average_replicas: float
    base_replicas: int
    peak_replicas: int
    replica_hours_per_month: float
    on_demand_hours: float
    spot_hours: float
    estimate: Estimate


def fits(model: OpenModel, instance: GpuInstance) -> bool:
    return model.memory_gb <= instance.gpu_memory_gb * 0.95 and model.size_class in instance.perf


def on_demand_base(agent: AgentDecision) -> int:
    lat = agent.latency
    return 1 if lat.resolved_audience == "interactive" and (lat.p95_s or 1e9) <= ON_DEMAND_FLOOR_CEILING_S else 0


def shape_fleet(
    agent: AgentDecision, perf: InstancePerf, traffic: Traffic, assumptions: Assumptions, idle_minutes: int
) -> FleetShape:
    capacity = max(1, math.floor(perf.knee_concurrency * assumptions.gpu_target_utilisation))
    estimate = gpu_estimate(perf, agent.profile, capacity)
    duration = estimate.ttft_p95_s + agent.profile.output_tokens_per_turn / max(1e-9, per_stream_speed(perf, capacity))
    avg_conc = traffic.avg_rps * duration
    peak_conc = traffic.peak_rps * duration
    base = max(1, math.ceil(avg_conc / capacity))
    peak = max(base, math.ceil(peak_conc / capacity))
    # At the planned concurrency per replica (not the cap), latency is what users see on average load.
    planned = gpu_estimate(perf, agent.profile, min(capacity, max(1.0, peak_conc / peak)))
    hours = traffic.active_hours_per_day
    tail = 0.0 if hours >= 24 else idle_minutes / 60.0
    per_day = base * (hours + tail) + (peak - base) * hours * PEAK_SHARE_OF_DAY
    replica_hours = per_day * traffic.days_per_month
    od_base = min(on_demand_base(agent), base)
    od_hours = od_base * (hours + tail) * traffic.days_per_month
    return FleetShape(
        capacity_per_replica=capacity,
        average_replicas=round(max(1.0, avg_conc / capacity), 3),
        base_replicas=base,
        peak_replicas=peak,
        replica_hours_per_month=replica_hours,
        on_demand_hours=od_hours,
        spot_hours=max(0.0, replica_hours - od_hours),
        estimate=Estimate(max(planned.ttft_p95_s, 0.0), planned.total_p95_s),
    )


def fallback_share(agent: AgentDecision, shape: FleetShape, assumptions: Assumptions, hours_per_day: float) -> float:
    """Share of requests the gateway sends to Claude: cold starts after scale-to-zero, spot losses."""
    cold = assumptions.cold_start_fallback_share if hours_per_day < 24 else assumptions.cold_start_fallback_share / 2
    spot_fraction = shape.spot_hours / shape.replica_hours_per_month if shape.replica_hours_per_month else 0.0
    return cold + assumptions.spot_interruption_fallback_share * spot_fraction


def fleet_cost(
    agent: AgentDecision,
    instance: GpuInstance,
    shape: FleetShape,
    assumptions: Assumptions,
    fallback_api_monthly_usd: float,
    ops_overhead_usd: float,
    hours_per_day: float,
) -> CostItems:
    share = fallback_share(agent, shape, assumptions, hours_per_day)
    return gpu_items(
        on_demand_hours=shape.on_demand_hours,
        spot_hours=shape.spot_hours,
        on_demand_rate=instance.on_demand_usd_per_hour,
        spot_rate=instance.spot_usd_per_hour,
        fallback_api_usd=share * fallback_api_monthly_usd,
        ops_overhead_usd=ops_overhead_usd,
    )
