"""A GPU fleet's Auto Scaling group as the simulation runs it: launches, cold starts, drains.

Rules (EC2 Auto Scaling's, with the stack's own hooks):

- the group works towards its desired capacity, bounded by MinSize and MaxSize; an instance
  that is terminating (drain hook) no longer counts towards it;
- a new instance's market follows the mixed-instances policy: the on-demand base first, then
  the on-demand percentage above it, spot for the rest;
- a launched instance is billed from launch (per second, 60 s minimum) and serves only after
  the plan's cold start, when its ready hook completes (one whose cold start outlasts the
  hook's timeout is abandoned: terminated and replaced, see the engine), and once the target
  group calls it healthy and the gateway has read that (`routable_s`);
- scale-in picks the newest instance (a pending one first: it serves nobody yet) and drains it:
  no new requests, terminated once its requests finish or the drain hook's timeout ends;
- a spot interruption notice (2 minutes) drains the instance at once; capacity rebalancing
  launches its replacement at the notice, and the instance is gone when the notice ends;
- while no spot capacity is to be had, spot launches fail and the group stays short of its
  desired capacity until capacity returns.

State changes are methods on `Group`; the engine owns the clock and the event queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Market = Literal["spot", "on_demand"]
Phase = Literal["pending", "in_service", "draining", "terminated"]

#: EC2 bills Linux instances per second with a 60-second minimum (on-demand and spot).
MIN_BILLED_S = 60.0


@dataclass
class Instance:
    id: int
    market: Market
    launched_at: float
    ready_at: float
    phase: Phase = "pending"
    in_flight: int = 0
    #: Set when draining: the time the instance is terminated at the latest.
    drain_deadline: float | None = None
    ended_at: float | None = None
    #: Whether a spot interruption (not a scale-in) drains it.
    interrupted: bool = False
    #: Launched to replace an interrupted spot instance.
    replaces_interrupted: bool = False

    @property
    def live(self) -> bool:
        """Counts towards the desired capacity (pending or in service)."""
        return self.phase in ("pending", "in_service")

    def billed_s(self, now: float) -> float:
        end = self.ended_at if self.ended_at is not None else now
        return max(MIN_BILLED_S, end - self.launched_at)


@dataclass(frozen=True)
class GroupSpec:
    """The group's settings, from the plan and the stack's definitions."""

    min_size: int
    max_size: int
    on_demand_base: int
    on_demand_pct_above_base: int
    cold_start_s: float
    #: After the cold start, until the gateway routes to the node: the target group's health
    #: checks and the gateway's next discovery read.
    routable_s: float
    #: The drain hook's timeout: a scale-in's longest drain.
    drain_s: float
    #: The spot interruption notice.
    notice_s: float


@dataclass
class Group:
    spec: GroupSpec
    desired: int = 0
    instances: list[Instance] = field(default_factory=list)
    next_id: int = 0
    scale_out_events: int = 0
    scale_in_events: int = 0
    #: No spot capacity in any of the group's zones: spot launches fail (the group keeps trying).
    spot_blocked: bool = False

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.live]

    def serving(self) -> list[Instance]:
        return [i for i in self.instances if i.phase == "in_service"]

    def _market(self) -> Market:
        on_demand = sum(1 for i in self.live() if i.market == "on_demand")
        count = len(self.live())
        if count < self.spec.on_demand_base:
            return "on_demand"
        above = count - self.spec.on_demand_base
        wanted_od = (above + 1) * self.spec.on_demand_pct_above_base / 100.0
        return "on_demand" if on_demand - self.spec.on_demand_base < wanted_od - 1e-9 else "spot"

    def launch(self, now: float) -> Instance:
        inst = Instance(self.next_id, self._market(), now, now + self.spec.cold_start_s + self.spec.routable_s)
        self.next_id += 1
        self.instances.append(inst)
        return inst

    def set_desired(self, desired: int) -> int:
        """Set the desired capacity within [MinSize, MaxSize]; counts scale events; the new value."""
        desired = max(self.spec.min_size, min(self.spec.max_size, desired))
        if desired > self.desired:
            self.scale_out_events += 1
        elif desired < self.desired:
            self.scale_in_events += 1
        self.desired = desired
        return desired

    def reconcile(self, now: float) -> tuple[list[Instance], list[Instance]]:
        """Launch or drain towards the desired capacity: (launched, drained)."""
        launched: list[Instance] = []
        drained: list[Instance] = []
        while len(self.live()) < self.desired and not (self.spot_blocked and self._market() == "spot"):
            launched.append(self.launch(now))
        while len(self.live()) > self.desired:
            victim = max(self.live(), key=lambda i: (i.phase == "pending", i.launched_at, i.id))
            self.drain(victim, now, self.spec.drain_s)
            drained.append(victim)
        return launched, drained

    def drain(self, inst: Instance, now: float, allowance_s: float) -> None:
        if inst.phase == "pending":  # nothing to drain: its ready hook is abandoned
            self.terminate(inst, now)
            return
        inst.phase = "draining"
        inst.drain_deadline = now + allowance_s

    def terminate(self, inst: Instance, now: float) -> None:
        inst.phase = "terminated"
        inst.ended_at = now

    def interrupt(self, inst: Instance, now: float) -> Instance | None:
        """A spot interruption notice: drain until the notice ends; the replacement launches now."""
        if inst.phase not in ("pending", "in_service") or inst.market != "spot":
            return None
        inst.interrupted = True
        self.drain(inst, now, self.spec.notice_s)
        if len(self.live()) >= self.desired or (self.spot_blocked and self._market() == "spot"):
            return None
        replacement = self.launch(now)
        replacement.replaces_interrupted = True
        return replacement

    def gpu_hours(self, now: float) -> dict[Market, float]:
        hours: dict[Market, float] = {"spot": 0.0, "on_demand": 0.0}
        for inst in self.instances:
            hours[inst.market] += inst.billed_s(now) / 3600.0
        return hours
