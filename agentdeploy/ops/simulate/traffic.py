"""Request arrivals for the simulation: the agent's declared volume over its daily shape.

The decision file gives a monthly volume, the hours traffic flows and how much busier the busiest
hour is (or 24 hourly weights). The planner prices on the average active hour and the busiest one
(`planner/traffic.py`, `PEAK_SHARE_OF_DAY`); the simulation needs a whole day, so it spreads the
day the same way: the busiest quarter of the active hours at the peak factor, the other active
hours carrying the rest, midnight-centred windows avoided by centring the active hours on noon.
Within each hour arrivals are Poisson (independent requests; a conversation's later turns are
counted as requests of their own, which is how the fleet sees them).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from agentdeploy.planner.fleet import PEAK_SHARE_OF_DAY

HOUR_S = 3600.0
DAY_S = 86400.0


def daily_weights(active_hours: float, peak_factor: float, hourly_shape: Sequence[float] | None) -> list[float]:
    """24 relative weights of the day (UTC hours), mean 1 over the active hours.

    With `hourly_shape` the user's weights are used as given. Otherwise the `active_hours` are
    centred on noon, the busiest ceil(25%) of them run at `peak_factor` times the active-hour
    average and the others share what is left (never below zero).
    """
    if hourly_shape is not None:
        active = [w for w in hourly_shape if w > 0]
        mean = sum(active) / len(active)
        return [w / mean for w in hourly_shape]
    n = max(1, min(24, round(active_hours)))
    start = (24 - n) // 2
    peak_n = max(1, math.ceil(n * PEAK_SHARE_OF_DAY)) if n > 1 else 1
    peak_start = start + (n - peak_n) // 2
    if n == peak_n:
        rest, peak = 0.0, 1.0
    else:
        rest = max(0.0, (n - peak_n * peak_factor) / (n - peak_n))
        peak = (n - rest * (n - peak_n)) / peak_n
    weights = [0.0] * 24
    for h in range(start, start + n):
        weights[h] = peak if peak_start <= h < peak_start + peak_n else rest
    return weights


def hourly_rates(requests_per_day: float, weights: Sequence[float]) -> list[float]:
    """Requests a second in each hour of the day, summing to `requests_per_day` over the day."""
    total = sum(weights)
    return [requests_per_day * w / total / HOUR_S for w in weights]


def poisson_arrivals(rng: random.Random, rates: Sequence[float], start_s: float, end_s: float) -> list[float]:
    """Arrival times in [start_s, end_s) with the hour-of-day rate `rates[hour % 24]`.

    Poisson arrivals are memoryless, so drawing each hour on its own from its own rate is exact
    for a piecewise-constant rate.
    """
    out: list[float] = []
    hour = int(start_s // HOUR_S)
    while hour * HOUR_S < end_s:
        lo, hi = max(start_s, hour * HOUR_S), min(end_s, (hour + 1) * HOUR_S)
        rate = rates[hour % 24]
        if rate > 0:
            t = lo + rng.expovariate(rate)
            while t < hi:
                out.append(t)
                t += rng.expovariate(rate)
        hour += 1
    return out


def constant_rate(rng: random.Random, rate: float, start_s: float, end_s: float) -> list[float]:
    """Poisson arrivals at one rate over [start_s, end_s)."""
    return poisson_arrivals(rng, [rate] * 24, start_s, end_s)


def every(interval_s: float, start_s: float, end_s: float) -> list[float]:
    """One request every `interval_s` seconds: a trickle with no gaps to hide in."""
    n = max(0, math.ceil((end_s - start_s) / interval_s))
    return [start_s + i * interval_s for i in range(n)]
