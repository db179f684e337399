"""The scenarios: what traffic and which faults each run meets, over `days` days from midnight UTC.

- `declared`: the agent's own traffic (Poisson at the launch volume over its day shape); the
  fleet starts as it would stand at midnight (one replica warm when midnight has traffic);
- `cold-burst`: every 3 hours, 30 minutes of traffic at the agent's busiest-hour rate against a
  fleet at zero (it has 2.5 quiet hours to scale in between: one wake episode each);
- `steady-trickle`: one short request (2 s on the fleet) a minute, from a fleet at zero;
- `spot-wave`: the declared traffic, with half the serving spot nodes (at least one) given their
  2-minute interruption notice at once, at the start of each day's busiest hour;
- `metrics-outage`: the declared traffic, with the node agents unable to publish for the first
  hour of each day's busiest stretch while requests continue;
- `spot-drought`: the declared traffic, with no spot capacity for 2 hours from each day's
  busiest hour: the serving spot nodes are reclaimed (2-minute notices) and no spot launch
  succeeds, so the on-demand standby has to step in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agentdeploy.ops.simulate.inputs import AgentInputs
from agentdeploy.ops.simulate.traffic import DAY_S, HOUR_S, constant_rate, every, hourly_rates, poisson_arrivals

#: The trickle's request: the operations review's example (one 2-second request a minute).
TRICKLE_INTERVAL_S = 60.0
TRICKLE_SERVICE_S = 2.0
BURST_EVERY_S = 3 * HOUR_S
BURST_LENGTH_S = 30 * 60.0
OUTAGE_S = HOUR_S

DROUGHT_S = 2 * HOUR_S

SCENARIOS = ("declared", "cold-burst", "steady-trickle", "spot-wave", "metrics-outage", "spot-drought")


@dataclass(frozen=True)
class Scenario:
    name: str
    arrivals: list[float]
    #: Seconds each request holds a fleet slot, by arrival.
    services: list[float]
    #: Replicas in service at t=0 (the group's desired capacity then).
    warm: int
    #: Times a wave of spot interruption notices reaches half the serving spot nodes.
    waves: tuple[float, ...]
    #: Windows [start, end) in which the node agents cannot publish.
    outages: tuple[tuple[float, float], ...]
    end_s: float
    #: Windows [start, end) without spot capacity (the serving spot nodes reclaimed at the start).
    droughts: tuple[tuple[float, float], ...] = ()


def _busiest_hour(inp: AgentInputs) -> int:
    return max(range(24), key=lambda h: (inp.weights[h], -h))


def _declared_warm(inp: AgentInputs) -> int:
    return 1 if inp.weights[0] > 0 else 0


def build(name: str, inp: AgentInputs, days: float, seed: int) -> Scenario:
    """The scenario `name` for this agent (deterministic in `seed`)."""
    rng = random.Random(f"{seed}:{inp.name}:{name}:traffic")
    end = days * DAY_S
    rates = hourly_rates(inp.requests_per_day, inp.weights)
    day_starts = [d * DAY_S for d in range(int(-(-days // 1)))]
    peak = _busiest_hour(inp) * HOUR_S
    if name == "declared":
        times = poisson_arrivals(rng, rates, 0.0, end)
        return Scenario(name, times, [inp.service_s] * len(times), _declared_warm(inp), (), (), end)
    if name == "cold-burst":
        times = []
        start = 0.0
        while start < end:
            times += constant_rate(rng, max(rates), start, min(end, start + BURST_LENGTH_S))
            start += BURST_EVERY_S
        return Scenario(name, times, [inp.service_s] * len(times), 0, (), (), end)
    if name == "steady-trickle":
        times = every(TRICKLE_INTERVAL_S, 0.0, end)
        return Scenario(name, times, [TRICKLE_SERVICE_S] * len(times), 0, (), (), end)
    if name == "spot-wave":
        times = poisson_arrivals(rng, rates, 0.0, end)
        waves = tuple(d + peak for d in day_starts if d + peak < end)
        return Scenario(name, times, [inp.service_s] * len(times), _declared_warm(inp), waves, (), end)
    if name == "metrics-outage":
        times = poisson_arrivals(rng, rates, 0.0, end)
        outages = tuple((d + peak, min(end, d + peak + OUTAGE_S)) for d in day_starts if d + peak < end)
        return Scenario(name, times, [inp.service_s] * len(times), _declared_warm(inp), (), outages, end)
    if name == "spot-drought":
        times = poisson_arrivals(rng, rates, 0.0, end)
        droughts = tuple((d + peak, min(end, d + peak + DROUGHT_S)) for d in day_starts if d + peak < end)
        return Scenario(name, times, [inp.service_s] * len(times), _declared_warm(inp), (), (), end, droughts)
    raise ValueError(f"unknown scenario {name!r}")
