"""Can the account actually get the GPUs the plan asks for? Checked by `deploy preview`/`up`.

A new account's quota for GPU instances is 0 vCPUs: `up` then succeeds and no node ever
launches. Service Quotas counts vCPUs per instance class (G and VT, P) separately for
on-demand and spot; not every zone offers every GPU type. `capacity_findings` is pure (the
facts in, findings out); `read_capacity` gathers the facts with boto3 (EC2 and Service
Quotas), so tests run it against moto and botocore's Stubber.

Quota codes (Service Quotas console, EC2, as of 2026-12): L-DB2E81BA "Running On-Demand G and
VT instances", L-3819A6DF "All G and VT Spot Instance Requests", L-417A185B "Running On-Demand
P instances", L-7212CCBC "All P Spot Instance Requests"; all count vCPUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentdeploy.planner.plan import Plan

#: instance class -> (on-demand quota code, spot quota code)
QUOTA_CODES = {"G and VT": ("L-DB2E81BA", "L-3819A6DF"), "P": ("L-417A185B", "L-7212CCBC")}


def instance_class(instance_type: str) -> str | None:
    family = instance_type.split(".", 1)[0]
    if family.startswith(("g", "vt")):
        return "G and VT"
    if family.startswith("p"):
        return "P"
    return None


@dataclass(frozen=True)
class CapacityFacts:
    region: str
    #: instance type -> vCPUs (DescribeInstanceTypes)
    vcpus: Mapping[str, int]
    #: instance type -> zones offering it (DescribeInstanceTypeOfferings)
    zones: Mapping[str, frozenset[str]]
    #: quota code -> value in vCPUs, None when it could not be read
    quotas: Mapping[str, float | None]


@dataclass(frozen=True)
class Finding:
    level: str  # "error": nothing would launch; "warning": less than planned
    message: str


@dataclass
class Needs:
    """vCPUs the plan's fleets may run at once, per instance class and purchase option."""

    on_demand: dict[str, int] = field(default_factory=dict)
    spot: dict[str, int] = field(default_factory=dict)


def fleet_types(plan: Plan) -> list[str]:
    return sorted({t for a in plan.agents if a.fleet for t in [a.fleet.instance_type, *a.fleet.instance_types]})


def fleet_classes(types: list[str], vcpus: Mapping[str, int]) -> dict[str, int]:
    """Instance class -> vCPUs of the class's largest type among a fleet's `types`."""
    out: dict[str, int] = {}
    for t in types:
        cls = instance_class(t)
        if cls is not None:
            out[cls] = max(out.get(cls, 0), vcpus.get(t, 0))
    return out


def needs(plan: Plan, vcpus: Mapping[str, int]) -> Needs:
    """At max replicas on the largest of a fleet's types, in every instance class its types
    span (the group may launch any of them): spot for every replica (the usual case), and
    on-demand for every replica too (the fallback when spot runs out)."""
    out = Needs()
    for agent in plan.agents:
        fleet = agent.fleet
        if fleet is None:
            continue
        for cls, per_node in fleet_classes([fleet.instance_type, *fleet.instance_types], vcpus).items():
            out.on_demand[cls] = out.on_demand.get(cls, 0) + per_node * fleet.max_replicas
            out.spot[cls] = out.spot.get(cls, 0) + per_node * fleet.max_replicas
    return out


def _request(code: str, value: int, region: str) -> str:
    return (f"aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
            f"--desired-value {value} --region {region}")


def _blocked(facts: CapacityFacts) -> dict[str, set[str]]:
    """Purchase option -> instance classes whose quota is below one node of the class."""
    out: dict[str, set[str]] = {"on-demand": set(), "spot": set()}
    for cls, (od_code, spot_code) in QUOTA_CODES.items():
        smallest = min((v for t, v in facts.vcpus.items() if instance_class(t) == cls), default=1)
        for label, code in (("on-demand", od_code), ("spot", spot_code)):
            have = facts.quotas.get(code)
            if have is not None and have < smallest:
                out[label].add(cls)
    return out


def capacity_findings(plan: Plan, facts: CapacityFacts) -> list[Finding]:
    out: list[Finding] = []
    need = needs(plan, facts.vcpus)
    blocked = _blocked(facts)
    # per purchase option: the classes some fleet can launch in no other class than (its types
    # all sit in blocked classes); a blocked quota there means nothing of that fleet launches
    stranded: dict[str, set[str]] = {"on-demand": set(), "spot": set()}
    for agent in plan.agents:
        if agent.fleet is not None:
            classes = set(fleet_classes([agent.fleet.instance_type, *agent.fleet.instance_types], facts.vcpus))
            for label in stranded:
                if classes and classes <= blocked[label]:
                    stranded[label] |= classes
    for cls, (od_code, spot_code) in QUOTA_CODES.items():
        for label, code, wanted in (("on-demand", od_code, need.on_demand.get(cls, 0)),
                                    ("spot", spot_code, need.spot.get(cls, 0))):
            if not wanted:
                continue
            have = facts.quotas.get(code)
            if have is None:
                out.append(Finding("warning", f"could not read the {label} {cls} vCPU quota ({code}) in {facts.region}; "
                                              f"the fleets need up to {wanted} vCPUs"))
            elif have < wanted:
                # below one node of the class, for a fleet with no type in another class:
                # nothing launches; otherwise fewer replicas, or only the fleet's other types
                level = "error" if cls in stranded[label] else "warning"
                out.append(Finding(level, f"{label} {cls} vCPU quota in {facts.region} is {have:g}, the fleets need up to "
                                          f"{wanted}: request it with `{_request(code, wanted, facts.region)}`"))
    for agent in plan.agents:
        fleet = agent.fleet
        if fleet is None:
            continue
        types = [fleet.instance_type, *[t for t in fleet.instance_types if t != fleet.instance_type]]
        missing = [t for t in types if not facts.zones.get(t)]
        if missing:
            out.append(Finding("warning", f"{agent.name}: {', '.join(missing)} not offered in any zone of {facts.region}"))
        zones = set().union(*(facts.zones.get(t, frozenset()) for t in types))
        if not zones:
            out.append(Finding("error", f"{agent.name}: none of {', '.join(types)} is offered in {facts.region}"))
        elif len(zones) < 2:
            out.append(Finding("warning", f"{agent.name}: its instance types are offered in one zone only ({min(zones)})"))
    return out


def read_capacity(plan: Plan, ec2: Any, quotas: Any) -> CapacityFacts:
    """The facts, from EC2 and Service Quotas clients (boto3), for the plan's instance types."""
    types = fleet_types(plan)
    vcpus: dict[str, int] = {}
    zones: dict[str, set[str]] = {t: set() for t in types}
    if types:
        for it in ec2.describe_instance_types(InstanceTypes=types)["InstanceTypes"]:
            vcpus[it["InstanceType"]] = int(it["VCpuInfo"]["DefaultVCpus"])
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": types}])
        for page in pages:
            for offer in page["InstanceTypeOfferings"]:
                zones[offer["InstanceType"]].add(offer["Location"])
    values: dict[str, float | None] = {}
    for cls in {instance_class(t) for t in types} - {None}:
        for code in QUOTA_CODES[str(cls)]:
            try:
                values[code] = float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
            except Exception:  # no permission, or the API does not answer: said as a warning
                values[code] = None
    return CapacityFacts(plan.region, vcpus, {t: frozenset(z) for t, z in zones.items()}, values)


def check_capacity(plan: Plan, session: Any | None = None) -> list[Finding]:
    """Findings for a plan, asking AWS (the default boto3 session) in the plan's region."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s = session or boto3.Session()
    try:
        facts = read_capacity(plan, s.client("ec2", region_name=plan.region),
                              s.client("service-quotas", region_name=plan.region))
    except (BotoCoreError, ClientError) as err:
        return [Finding("warning", f"could not check GPU quota and zone offerings in {plan.region}: {err}")]
    return capacity_findings(plan, facts)
