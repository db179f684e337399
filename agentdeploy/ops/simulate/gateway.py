"""The gateway's routing for one fleet, as the simulation runs it.

Rules (the gateway's, `serving/` and `templates/gateway_config.py`):

- a request goes to the least-loaded node that is in service, not draining, and below the
  plan's `max_concurrency_per_replica`;
- otherwise it goes to the Claude fallback, for a reason (the simulation's account of why no
  node could take it): `overload` (every serving node is full), `cold_start` (the fleet is at zero, or its nodes are
  still loading), `spot_loss` (nodes draining after a spot interruption notice, or their
  replacements still loading), `no_healthy_node` (anything else);
- every request meant for the fleet that it could not take counts as unmet demand (the gateway's
  UnmetDemand metric, never tracked by the autoscaler);
- wake: a request that finds no healthy node makes the gateway raise the group from zero itself,
  at most one attempt per `min_interval_s` (SetDesiredCapacity without HonorCooldown: no policy
  cooldown blocks it); see `GatewayWake`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agentdeploy.ops.simulate.fleet import Instance
from agentdeploy.serving.wake import wake_capacity

Reason = Literal["cold_start", "overload", "spot_loss", "no_healthy_node"]
REASONS: tuple[Reason, ...] = ("cold_start", "overload", "spot_loss", "no_healthy_node")


@dataclass(frozen=True)
class WakeRule:
    """The gateway's own wake for one fleet (None of it when the gateway config has no wake)."""

    capacity: int
    min_interval_s: float


def pick(instances: list[Instance], desired: int, max_concurrency: int) -> Instance | Reason:
    """The node a new request goes to, or why it goes to the fallback (pure). `instances`: both
    groups' (spot and on-demand standby share the target group); `desired`: the spot group's."""
    serving = [i for i in instances if i.phase == "in_service"]
    free = [i for i in serving if i.in_flight < max_concurrency]
    if free:
        return min(free, key=lambda i: (i.in_flight, i.id))
    if serving:
        return "overload"
    if desired == 0:
        return "cold_start"
    if any(i.interrupted or i.replaces_interrupted for i in instances if i.phase in ("draining", "pending")):
        return "spot_loss"
    if any(i.phase == "pending" for i in instances):
        return "cold_start"
    return "no_healthy_node"


@dataclass
class GatewayWake:
    """The gateway's wake for one fleet (serving/wake.py's FleetWaker, minus the threads).

    A request that finds no healthy node starts one attempt unless one started within
    `min_interval_s`; the attempt reads the group and raises it only when it is at zero
    (`serving.wake.wake_capacity`, the gateway's own rule).
    """

    rule: WakeRule | None
    last_attempt_s: float | None = None
    wakes: int = 0

    def decide(self, desired: int, max_size: int, now: float) -> int | None:
        """The desired capacity to set now, or None."""
        if self.rule is None:
            return None
        if self.last_attempt_s is not None and now - self.last_attempt_s < self.rule.min_interval_s:
            return None
        self.last_attempt_s = now
        target = wake_capacity(desired, max_size, self.rule.capacity)
        if target is not None:
            self.wakes += 1
        return target
