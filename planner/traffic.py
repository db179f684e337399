"""Arrival rates derived from monthly volume and the shape of the day.

Caching hit rates, fleet sizing and GPU hours all depend on how densely requests arrive during
the hours traffic flows, not on the monthly total alone.
"""

from __future__ import annotations

from typing import NamedTuple

from agentdeploy.planner.spec import AgentDecision


class Traffic(NamedTuple):
    """A NamedTuple, not a frozen dataclass: the planner builds over 100,000 per 1,000 agents."""

    conversations_per_month: float
    requests_per_month: float
    active_hours_per_day: float
    peak_factor: float
    #: Requests per second, averaged over active hours, and in the busiest hour.
    avg_rps: float
    peak_rps: float
    days_per_month: float

    @property
    def active_seconds_per_month(self) -> float:
        return self.active_hours_per_day * 3600 * self.days_per_month


def traffic_for(agent: AgentDecision, conversations_per_month: float, days_per_month: float) -> Traffic:
    hours = agent.volume.resolved_active_hours
    peak = agent.volume.resolved_peak_factor
    requests = conversations_per_month * agent.profile.turns
    avg = requests / (hours * 3600 * days_per_month)
    return Traffic(
        conversations_per_month=conversations_per_month,
        requests_per_month=requests,
        active_hours_per_day=hours,
        peak_factor=peak,
        avg_rps=avg,
        peak_rps=avg * peak,
        days_per_month=days_per_month,
    )
