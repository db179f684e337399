"""Spot interruption and rebalance notices, as IMDS serves them (pure parsing)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone


def parse_imds_time(value: str) -> datetime:
    """IMDS timestamps look like 2026-11-23T19:00:00Z (UTC)."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class SpotNotice:
    """`{"action": "terminate|stop|hibernate", "time": "...Z"}` from spot/instance-action."""

    action: str
    time: datetime

    @property
    def deadline_epoch(self) -> float:
        return self.time.timestamp()

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ")}


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
