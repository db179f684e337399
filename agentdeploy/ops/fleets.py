"""Find a stack's GPU fleets (Auto Scaling groups) by the tags our Pulumi program puts on them.

Shared by reap and status. The server-side tag filter narrows the listing; every group is then
checked again here, so a group lacking the stack's tags can never reach a caller that acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agentdeploy.naming import ROLE_GPU_FLEET, TAG_AGENT, TAG_ROLE, TAG_STACK, tag_filters
from agentdeploy.ops.aws import AwsClient


@dataclass(frozen=True)
class FleetInstance:
    instance_id: str
    instance_type: str
    lifecycle_state: str
    health_status: str

    @property
    def healthy(self) -> bool:
        return self.lifecycle_state == "InService" and self.health_status == "Healthy"


@dataclass(frozen=True)
class Fleet:
    name: str
    agent: str | None
    min_size: int
    max_size: int
    desired: int
    created: datetime
    instances: tuple[FleetInstance, ...]
    tags: dict[str, str]

    @property
    def in_service(self) -> int:
        """Instances the group counts as running (InService), healthy or not."""
        return sum(1 for i in self.instances if i.lifecycle_state == "InService")


def belongs_to(tags: dict[str, str], stack: str) -> bool:
    """True only for a GPU fleet carrying this stack's tags."""
    return tags.get(TAG_STACK) == stack and tags.get(TAG_ROLE) == ROLE_GPU_FLEET


def _fleet(group: dict) -> Fleet:
    tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
    instances = tuple(
        FleetInstance(
            instance_id=i["InstanceId"],
            instance_type=i.get("InstanceType", ""),
            lifecycle_state=i.get("LifecycleState", ""),
            health_status=i.get("HealthStatus", ""),
        )
        for i in group.get("Instances", [])
    )
    return Fleet(
        name=group["AutoScalingGroupName"],
        agent=tags.get(TAG_AGENT),
        min_size=int(group["MinSize"]),
        max_size=int(group["MaxSize"]),
        desired=int(group["DesiredCapacity"]),
        created=group["CreatedTime"],
        instances=instances,
        tags=tags,
    )


def list_fleets(autoscaling: AwsClient, stack: str) -> list[Fleet]:
    groups = autoscaling.paginate(
        "describe_auto_scaling_groups",
        "AutoScalingGroups",
        Filters=tag_filters(stack, ROLE_GPU_FLEET),
    )
    fleets = [_fleet(g) for g in groups]
    return sorted((f for f in fleets if belongs_to(f.tags, stack)), key=lambda f: f.name)


def current_fleet(autoscaling: AwsClient, name: str) -> Fleet | None:
    """The group as it is now (None when it no longer exists)."""
    groups = autoscaling.call("describe_auto_scaling_groups", AutoScalingGroupNames=[name]).get("AutoScalingGroups", [])
    return _fleet(groups[0]) if groups else None


def describe_instances(ec2: AwsClient, instance_ids: list[str]) -> dict[str, dict]:
    """InstanceId -> EC2's description (LaunchTime, InstanceLifecycle, ...)."""
    if not instance_ids:
        return {}
    out: dict[str, dict] = {}
    for start in range(0, len(instance_ids), 200):
        reservations = ec2.paginate(
            "describe_instances",
            "Reservations",
            # A filter, not InstanceIds: an instance terminated meanwhile is skipped, not an error.
            Filters=[{"Name": "instance-id", "Values": instance_ids[start : start + 200]}],
        )
        for res in reservations:
            for inst in res.get("Instances", []):
                out[inst["InstanceId"]] = inst
    return out
