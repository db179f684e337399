"""GPU hours of instances EC2 no longer lists, from the fleets' Auto Scaling activity history.

EC2 drops a terminated instance from DescribeInstances after about an hour, and scale-to-zero
fleets terminate instances all day, so instance hours read from EC2 alone lose most of a month.
Auto Scaling keeps each group's activities for six weeks: "Launching a new EC2 instance: i-..."
and "Terminating EC2 instance: i-..." with their start and end times. An instance that EC2 no
longer describes is counted from its launch activity's start to its termination activity's end,
clipped to the period. (No charge source starts earlier or ends later: EC2 bills from the
pending state to the end of shutting-down, which these activities bracket.)

What the activities do not say is the instance's type or whether it ran as spot: it is priced at
the plan's instance type, on-demand (the higher figure, so the report never flatters the fleet),
and the report says how many hours were priced that way. Cost Explorer by tag
(`--gpu-source cost-explorer`) is exact where it is enabled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from agentdeploy.ops.cost import InstanceUsage

_LAUNCH = re.compile(r"^Launching a new EC2 instance: (i-[0-9a-f]+)")
_TERMINATE = re.compile(r"^Terminating EC2 instance: (i-[0-9a-f]+)")


def gone_instance_usage(
    activities: Iterable[dict[str, Any]],
    listed: set[str],
    agent: str | None,
    instance_type: str,
    since: datetime,
    until: datetime,
) -> tuple[list[InstanceUsage], list[str]]:
    """Usage of the instances one group launched or terminated that EC2 did not list (`listed`)."""
    launched: dict[str, datetime] = {}
    ended: dict[str, datetime] = {}
    for act in activities:
        if act.get("StatusCode") != "Successful":
            continue  # a failed launch ran nothing; a failed termination leaves it running (still listed)
        description = act.get("Description", "") or ""
        if match := _LAUNCH.match(description):
            launched[match.group(1)] = act["StartTime"]
        elif (match := _TERMINATE.match(description)) and act.get("EndTime") is not None:
            ended[match.group(1)] = act["EndTime"]
    usages: list[InstanceUsage] = []
    warnings: list[str] = []
    for instance_id in sorted(set(ended) - listed):
        start = launched.get(instance_id)
        if start is None:
            # Launched before the six weeks of history: it ran at least since the period began, if
            # the period begins inside the history; count from there.
            start = since
        lo, hi = max(start, since), min(ended[instance_id], until)
        hours = max(0.0, (hi - lo).total_seconds() / 3600)
        usages.append(InstanceUsage(instance_id, agent, instance_type, spot=False, hours=hours, ended=True))
    unknown_end = sorted(set(launched) - set(ended) - listed)
    if unknown_end:
        warnings.append(f"{', '.join(unknown_end)}: launched, never seen terminating, and not listed by EC2; not counted")
    return usages, warnings
