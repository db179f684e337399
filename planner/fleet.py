"""Self-hosted fleet sizing and its monthly cost at a given volume.

Concurrency follows Little's law (arrival rate x request duration, the prompt's prefill
included); each replica is run at a share of its knee concurrency so the p95 holds, and no
replica is given more requests a second than its compute can prefill and decode. GPU hours follow
the day's shape: replicas for the average active hour all active hours, extra replicas for the
busy part, an idle tail before scale-to-zero, and the boot time of every daily scale-up (billed
from launch, before the replica serves). Latency-critical interactive agents keep their first
replica on-demand (a spot loss then costs capacity, not the whole fleet); everything above runs
on spot. What the fleet cannot serve goes to the Claude fallback: the first cold start of each
active day, the busy hour's traffic above the base while extra replicas boot, and a spot-lost
replica's share until its replacement serves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentdeploy.planner.catalog import Assumptions, GpuInstance, InstancePerf, OpenModel
from agentdeploy.planner.cost import MonthCost, gpu_items
from agentdeploy.planner.latency import Estimate, Prompt, gpu_times, per_stream_speed, prompt_of
from agentdeploy.planner.spec import AgentDecision
from agentdeploy.planner.traffic import Traffic

#: Share of active hours the busiest-hour replica count is needed (EST).
PEAK_SHARE_OF_DAY = 0.25
#: Interactive agents with a ceiling at or under this keep an on-demand base replica.
ON_DEMAND_FLOOR_CEILING_S = 10.0


@dataclass(frozen=True)
class FleetShape:
    capacity_per_replica: int
    #: Requests in flight per replica at which the planned replica count is exactly enough: the
    #: concurrency cap, or fewer when the replica's compute saturates first (request time /
    #: compute time). The autoscaler's target: tracking it runs the fleet the plan priced.
    target_in_flight: float
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


def prefill_rate(perf: InstancePerf, instance: GpuInstance, model: OpenModel, assumptions: Assumptions) -> float:
    """Prompt tokens a second one replica prefills: the catalog's figure, or GPUs x dense BF16
    FLOPs x MFU / (2 FLOPs a parameter a token)."""
    if perf.prefill_tok_s is not None:
        return perf.prefill_tok_s
    return instance.gpu_count * instance.bf16_tflops * 1e12 * assumptions.prefill_mfu / (2 * model.params_b * 1e9)


@dataclass(frozen=True)
class Replica:
    """What one replica does with this agent's requests, whatever the volume."""

    #: Concurrent requests it is run at, at most.
    capacity: int
    #: Seconds one request occupies a slot (first token with the mean prompt's prefill, then decode).
    duration_s: float
    #: Seconds of the replica's compute one request takes (prefill + its share of the decode).
    compute_s: float


def replica_for(agent: AgentDecision, perf: InstancePerf, assumptions: Assumptions, prefill_tok_s: float, prompt: Prompt | None = None) -> Replica:
    capacity = max(1, math.floor(perf.knee_concurrency * assumptions.gpu_target_utilisation))
    p = prompt or prompt_of(agent.profile)
    ttft, _ = gpu_times(perf, p.largest, p.p95_output, capacity, prefill_tok_s)
    prefill_s = p.mean / prefill_tok_s
    speed = max(1e-9, per_stream_speed(perf, capacity))
    # the p95 first token already holds the largest prompt's prefill: use the mean prompt here
    duration = ttft - p.largest / prefill_tok_s + prefill_s + p.output / speed
    # a replica's compute: each request takes its prefill plus its share of the decode at capacity
    compute_s = prefill_s + p.output / (speed * capacity)
    return Replica(capacity, duration, compute_s)


def target_in_flight(r: Replica) -> float:
    """Per-replica in-flight requests that `replica_counts` sizes for: min(cap, duration /
    compute), rounded down to 0.01 so tracking never asks a replica for more than it computes."""
    saturation = r.duration_s / r.compute_s if r.compute_s > 0 else float(r.capacity)
    return max(1.0, math.floor(min(float(r.capacity), saturation) * 100) / 100)


def replica_counts(r: Replica, avg_rps: float, peak_rps: float) -> tuple[int, int]:
    """(base, peak) replicas: enough slots for the concurrency and enough compute for the rate."""
    capacity, duration, compute_s = r.capacity, r.duration_s, r.compute_s
    avg_conc, peak_conc = avg_rps * duration, peak_rps * duration
    base = max(1, math.ceil(avg_conc / capacity), math.ceil(avg_rps * compute_s))
    peak = max(base, math.ceil(peak_conc / capacity), math.ceil(peak_rps * compute_s))
    return base, peak


def replica_hours(on_demand: int, base: int, peak: int, hours: float, days: float, idle_minutes: int, cold_start_s: float) -> tuple[float, float]:
    """(replica hours, on-demand hours) a month for `base` and `peak` replicas; `on_demand` base
    replicas at most run on-demand."""
    tail = 0.0 if hours >= 24 else idle_minutes / 60.0
    boot = cold_start_s / 3600.0
    # every replica started in a day bills its boot: the base ones after each night's scale-to-zero
    boots_per_day = (base if hours < 24 else 0) + (peak - base)
    per_day = base * (hours + tail) + (peak - base) * hours * PEAK_SHARE_OF_DAY + boots_per_day * boot
    od_base = min(on_demand, base)
    od_hours = od_base * (hours + tail + (boot if hours < 24 else 0.0)) * days
    return per_day * days, od_hours


def _hours(agent: AgentDecision, r: Replica, traffic: Traffic, idle_minutes: int, cold_start_s: float) -> tuple[int, int, float, float]:
    """(base replicas, peak replicas, replica hours, on-demand hours) a month."""
    base, peak = replica_counts(r, traffic.avg_rps, traffic.peak_rps)
    hours, od_hours = replica_hours(on_demand_base(agent), base, peak, traffic.active_hours_per_day, traffic.days_per_month, idle_minutes,
                                    cold_start_s)
    return base, peak, hours, od_hours


def shape_of(prompt: Prompt, perf: InstancePerf, r: Replica, prefill_tok_s: float, counts: tuple[int, int], hours: tuple[float, float],
             rates: tuple[float, float]) -> FleetShape:
    """The fleet at (base, peak) replicas, (replica, on-demand) hours and (average, busiest-hour)
    requests a second, with the latency its busiest hour sees."""
    (base, peak), (replica_hours, od_hours), (avg_rps, peak_rps) = counts, hours, rates
    capacity = r.capacity
    return FleetShape(
        capacity_per_replica=capacity,
        target_in_flight=target_in_flight(r),
        average_replicas=round(max(1.0, avg_rps * r.duration_s / capacity), 3),
        base_replicas=base,
        peak_replicas=peak,
        replica_hours_per_month=replica_hours,
        on_demand_hours=od_hours,
        spot_hours=max(0.0, replica_hours - od_hours),
        estimate=planned_estimate(prompt, perf, r, prefill_tok_s, peak, peak_rps),
    )


def planned_estimate(prompt: Prompt, perf: InstancePerf, r: Replica, prefill_tok_s: float, peak: int, peak_rps: float) -> Estimate:
    """The p95s at the concurrency each of `peak` replicas runs in the busiest hour (not the cap):
    what users see."""
    ttft, total = gpu_times(perf, prompt.largest, prompt.p95_output, min(r.capacity, max(1.0, peak_rps * r.duration_s / peak)), prefill_tok_s)
    return Estimate(max(ttft, 0.0), total)


def shape_fleet(
    agent: AgentDecision, perf: InstancePerf, traffic: Traffic, assumptions: Assumptions, idle_minutes: int,
    prefill_tok_s: float, cold_start_s: float, replica: Replica | None = None,
) -> FleetShape:
    r = replica or replica_for(agent, perf, assumptions, prefill_tok_s)
    base, peak, replica_hours, od_hours = _hours(agent, r, traffic, idle_minutes, cold_start_s)
    return shape_of(prompt_of(agent.profile), perf, r, prefill_tok_s, (base, peak), (replica_hours, od_hours), (traffic.avg_rps, traffic.peak_rps))


def fallback_share(shape: FleetShape, traffic: Traffic, assumptions: Assumptions, cold_start_s: float) -> float:
    """Share of requests the gateway sends to Claude, from the cold-start and interruption model.

    - each active day (under 24 h) starts at zero replicas: requests of the first cold start;
    - the busy hour's requests above the base replicas' share while the extra replicas boot;
    - a spot interruption takes one replica's share of the traffic until its replacement serves.
    """
    return share_of(shape.base_replicas, shape.peak_replicas, shape.spot_hours, shape.replica_hours_per_month, traffic.active_hours_per_day,
                    traffic.peak_factor, assumptions, cold_start_s)


def share_of(base: int, peak: int, spot_hours: float, replica_hours: float, hours: float, peak_factor: float, assumptions: Assumptions,
             cold_start_s: float) -> float:
    """`fallback_share` from the fleet's counts and hours and the day's shape."""
    day_s = hours * 3600.0
    cold = min(1.0, cold_start_s / day_s) if hours < 24 else 0.0
    spill = 0.0
    if peak > base:
        busy_s = day_s * PEAK_SHARE_OF_DAY
        spill = (1 - base / peak) * min(cold_start_s, busy_s) / day_s * peak_factor
    interruptions = spot_hours * assumptions.spot_interruptions_per_month / 730.0
    lost = interruptions * cold_start_s / 3600.0 / replica_hours if replica_hours else 0.0
    return min(1.0, cold + spill + lost)


def fleet_cost(
    agent: AgentDecision,
    instance: GpuInstance,
    shape: FleetShape,
    assumptions: Assumptions,
    fallback_api_monthly_usd: float,
    ops_overhead_usd: float,
    traffic: Traffic,
) -> MonthCost:
    share = fallback_share(shape, traffic, assumptions, instance.cold_start_s)
    return gpu_items(
        on_demand_hours=shape.on_demand_hours,
        spot_hours=shape.spot_hours,
        on_demand_rate=instance.on_demand_usd_per_hour,
        spot_rate=instance.spot_usd_per_hour,
        fallback_api_usd=share * fallback_api_monthly_usd,
        ops_overhead_usd=ops_overhead_usd,
    )
