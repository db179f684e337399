"""Termination and rebalance notices, as IMDS serves them (pure parsing and decisions).

Two things end an instance the agent must drain for: a spot interruption (EC2 sets the
deadline) and the Auto Scaling group's own decision to terminate it — scale-in, capacity
rebalance, instance refresh — seen as `autoscaling/target-lifecycle-state` = "Terminated".
The group holds the instance on the terminating lifecycle hook for its heartbeat timeout, so
that deadline is the agent's drain budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

NoticeKind = Literal["spot", "scale-in"]
#: The target lifecycle state once the group has decided to terminate the instance.
TARGET_TERMINATED = "Terminated"


def parse_imds_time(value: str) -> datetime:
    """IMDS timestamps look like 2026-11-23T19:00:00Z (UTC)."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class TerminationNotice:
    """Why and by when the instance goes. For a spot notice this is
    `{"action": "terminate|stop|hibernate", "time": "...Z"}` from spot/instance-action; for a
    scale-in, "terminate" at the end of the agent's drain budget."""

    action: str
    time: datetime
    kind: NoticeKind = "spot"

    @property
    def deadline_epoch(self) -> float:
        return self.time.timestamp()

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "action": self.action, "time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ")}


#: The name the spot path has always used.
SpotNotice = TerminationNotice


def parse_spot_notice(body: str) -> SpotNotice:
    """Raises ValueError on anything that is not a well-formed notice."""
    data = json.loads(body)
    if not isinstance(data, dict) or "action" not in data or "time" not in data:
        raise ValueError(f"not a spot instance-action document: {body[:200]!r}")
    return SpotNotice(action=str(data["action"]), time=parse_imds_time(str(data["time"])))


def parse_rebalance(body: str) -> datetime:
    """`{"noticeTime": "...Z"}` from events/recommendations/rebalance."""
    data = json.loads(body)
    if not isinstance(data, dict) or "noticeTime" not in data:
        raise ValueError(f"not a rebalance recommendation: {body[:200]!r}")
    return parse_imds_time(str(data["noticeTime"]))


def parse_target_lifecycle_state(body: str) -> str:
    """`InService`, `Terminated`, `Standby`, `Detached`, `Warmed:*` from autoscaling/target-lifecycle-state."""
    state = body.strip()
    if not state or any(c.isspace() for c in state):
        raise ValueError(f"not a target lifecycle state: {body[:200]!r}")
    return state


def scale_in_notice(target_state: str | None, seen_epoch: float, budget_s: float) -> TerminationNotice | None:
    """A notice to drain by `seen_epoch + budget_s` once the group is terminating us, else None.

    None for the state (IMDS answered 404: not in an Auto Scaling group, or no such path) and
    every state but "Terminated" (InService, Standby, Detached, warm pool states) never drain.
    """
    if target_state != TARGET_TERMINATED:
        return None
    deadline = datetime.fromtimestamp(seen_epoch, UTC) + timedelta(seconds=budget_s)
    return TerminationNotice(action="terminate", time=deadline, kind="scale-in")
