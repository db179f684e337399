"""One agent's run through one scenario, as counted by the engine (what the report reads)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentdeploy.ops.simulate.fleet import Market
from agentdeploy.ops.simulate.gateway import REASONS, Reason


@dataclass
class RunResult:
    agent: str
    scenario: str
    days: float
    requests: int = 0
    fleet_served: int = 0
    fallback: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    #: Seconds from the first request finding the fleet cold to the first one it served.
    wake_s: list[float] = field(default_factory=list)
    gpu_hours: dict[Market, float] = field(default_factory=lambda: {"spot": 0.0, "on_demand": 0.0})
    scale_out: int = 0
    scale_in: int = 0
    #: Scale-ins to zero followed by a scale-out from zero.
    zero_cycles: int = 0
    #: Scale-ins to zero while requests were in flight or arrived within the idle window.
    busy_scale_to_zero: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    gpu_usd: float = 0.0
    fallback_usd: float = 0.0

    @property
    def fallback_requests(self) -> int:
        return sum(self.fallback.values())
