"""`deploy status`'s pure part: a fleet's counts from its group and EC2's instance descriptions.

moto launches every Auto Scaling instance on demand, so the spot side is checked here, on the
same function the command uses, with the shapes AWS returns.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agentdeploy.ops.fleets import Fleet, FleetInstance
from agentdeploy.ops.status import fleet_status


def _fleet(*instances: FleetInstance, desired: int) -> Fleet:
    return Fleet(name="prod-router", agent="router", min_size=0, max_size=6, desired=desired,
                 created=datetime(2026, 11, 1, tzinfo=UTC), instances=instances, tags={})


def test_spot_and_on_demand_are_told_apart_and_only_healthy_in_service_counts():
    fleet = _fleet(
        FleetInstance("i-od", "g6.xlarge", "InService", "Healthy"),
        FleetInstance("i-spot1", "g6.xlarge", "InService", "Healthy"),
        FleetInstance("i-spot2", "g5.xlarge", "InService", "Unhealthy"),  # still loading the model
        FleetInstance("i-spot3", "g5.xlarge", "Pending", "Healthy"),
        desired=4,
    )
    # EC2 marks spot instances with InstanceLifecycle "spot"; on-demand ones have no such key.
    ec2 = {"i-od": {}, "i-spot1": {"InstanceLifecycle": "spot"}, "i-spot2": {"InstanceLifecycle": "spot"},
           "i-spot3": {"InstanceLifecycle": "spot"}}
    s = fleet_status(fleet, ec2)
    assert (s.desired, s.in_service, s.healthy, s.spot, s.on_demand) == (4, 3, 2, 3, 1)
    assert s.instance_types == ["g5.xlarge", "g6.xlarge"]


def test_an_instance_ec2_no_longer_lists_counts_as_on_demand_not_spot():
    """Spot is claimed only where EC2 says so (the cheaper figure is never assumed)."""
    s = fleet_status(_fleet(FleetInstance("i-gone", "g6.xlarge", "Terminating", "Healthy"), desired=0), {})
    assert (s.spot, s.on_demand, s.in_service, s.healthy) == (0, 1, 0, 0)
