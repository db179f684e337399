"""The year's ramp: price each option month by month and find when self-hosting starts to pay.

The route is chosen on the year's cost, not on month 12's alone: an agent whose fleet pays only
late in the year starts on the API, and the plan says when to move (the switch point), so nobody
pays for idle GPUs through the months the volume was too small for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.planner.options import ApiOption, GpuOption


@dataclass(frozen=True)
class Switch:
    """Start on the API; move to the fleet from `month` (1-12) on."""

    month: int
    #: The year's cost with the move, and what it saves against staying on the API all year.
    year_usd: float
    saved_usd: float


def best_switch(api: ApiOption, gpu: GpuOption) -> Switch | None:
    """The month to move that makes the year cheapest, when moving beats staying on the API."""
    a, g = api.months, gpu.months
    if len(a) != 12 or len(g) != 12:
        return None
    best: Switch | None = None
    for k in range(1, 12):  # move at month k+1 (index k); k = 0 is "the fleet from launch"
        year = sum(a[:k]) + sum(g[k:])
        if year < api.year_usd - 1e-9 and (best is None or year < best.year_usd):
            best = Switch(month=k + 1, year_usd=year, saved_usd=api.year_usd - year)
    return best
