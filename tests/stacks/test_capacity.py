"""GPU capacity checks (`deploy preview`): instance types and zone offerings from moto's EC2,
quotas through botocore's Stubber (moto does not model EC2's Service Quotas), with the request
to make when a quota is short."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from agentdeploy.planner import build_plan, load_decision_file
from agentdeploy.stacks.capacity import CapacityFacts, capacity_findings, check_capacity, needs, read_capacity
from tests.stacks.harness import EXAMPLES


@pytest.fixture(scope="module")
def plan():
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"))
    assert any(a.fleet for a in plan.agents)
    return plan


def _quota(code: str, value: float) -> dict:
    return {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": code, "Value": value, "Unit": "None",
                      "Adjustable": True, "GlobalQuota": False}}


def _stubbed_quotas(on_demand: float, spot: float):
    client = boto3.client("service-quotas", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("get_service_quota", _quota("L-DB2E81BA", on_demand), {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    stub.add_response("get_service_quota", _quota("L-3819A6DF", spot), {"ServiceCode": "ec2", "QuotaCode": "L-3819A6DF"})
    stub.activate()
    return client


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        yield


def test_a_new_account_with_zero_gpu_quota_is_an_error_with_the_request(aws, plan):
    facts = read_capacity(plan, boto3.client("ec2", region_name="us-east-1"), _stubbed_quotas(0, 0))
    fleet = next(a.fleet for a in plan.agents if a.fleet)
    assert facts.vcpus[fleet.instance_type] >= 4  # from EC2's own instance data
    assert len(facts.zones[fleet.instance_type]) >= 2
    findings = capacity_findings(plan, facts)
    errors = [f.message for f in findings if f.level == "error"]
    wanted = needs(plan, facts.vcpus).spot["G and VT"]
    assert len(errors) == 2
    assert f"--quota-code L-DB2E81BA --desired-value {wanted} --region us-east-1" in errors[0]
    assert "L-3819A6DF" in errors[1]


def test_enough_quota_is_quiet_and_a_partial_quota_a_warning(aws, plan):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ok = capacity_findings(plan, read_capacity(plan, ec2, _stubbed_quotas(1000, 1000)))
    assert ok == []
    partial = capacity_findings(plan, read_capacity(plan, ec2, _stubbed_quotas(8, 8)))
    assert partial
    assert all(f.level == "warning" for f in partial)


def test_zone_offerings():
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"))
    fleet = next(a.fleet for a in plan.agents if a.fleet)
    types = [fleet.instance_type, *fleet.instance_types]
    vcpus = {t: 8 for t in types}
    quotas = {"L-DB2E81BA": 1000.0, "L-3819A6DF": 1000.0}
    one_zone = CapacityFacts("us-east-1", vcpus, {t: frozenset({"us-east-1a"}) for t in types}, quotas)
    assert [f.level for f in capacity_findings(plan, one_zone)] == ["warning"]
    nowhere = CapacityFacts("us-east-1", vcpus, {t: frozenset() for t in types}, quotas)
    assert "error" in [f.level for f in capacity_findings(plan, nowhere)]


def test_unreadable_quota_is_a_warning_not_a_crash(aws, plan):
    # moto answers Service Quotas for EC2 with NoSuchResourceException
    findings = check_capacity(plan, boto3.Session(region_name="us-east-1"))
    assert findings
    assert all(f.level == "warning" and "could not read" in f.message for f in findings)


def _with_types(plan, types: list[str]):
    agents = [a.model_copy(update={"fleet": a.fleet.model_copy(update={"instance_types": types})}) if a.fleet else a
              for a in plan.agents]
    return plan.model_copy(update={"agents": agents})


def test_every_type_of_every_family_is_checked(aws, plan):
    """Quotas and zones for each type the group may launch, in each instance class they span."""
    fleet = next(a.fleet for a in plan.agents if a.fleet)
    assert len({t.split(".")[0] for t in fleet.instance_types}) >= 2
    ec2 = boto3.client("ec2", region_name="us-east-1")
    facts = read_capacity(plan, ec2, _stubbed_quotas(1000, 1000))
    assert set(facts.vcpus) == set(facts.zones) == set(fleet.instance_types)
    mixed = _with_types(plan, [fleet.instance_type, "p5.4xlarge"])
    need = needs(mixed, {fleet.instance_type: 4, "p5.4xlarge": 16})
    assert need.spot == {"G and VT": 4 * fleet.max_replicas, "P": 16 * fleet.max_replicas}


def test_a_blocked_class_is_an_error_only_when_the_fleet_has_no_other(plan):
    fleet = next(a.fleet for a in plan.agents if a.fleet)
    mixed = _with_types(plan, [fleet.instance_type, "p5.4xlarge"])
    vcpus = {fleet.instance_type: 4, "p5.4xlarge": 16}
    zones = {t: frozenset({"us-east-1a", "us-east-1b"}) for t in vcpus}
    no_p = {"L-DB2E81BA": 1000.0, "L-3819A6DF": 1000.0, "L-417A185B": 0.0, "L-7212CCBC": 0.0}
    findings = capacity_findings(mixed, CapacityFacts("us-east-1", vcpus, zones, no_p))
    assert findings
    assert {f.level for f in findings} == {"warning"}  # the G types still launch
    assert all("P vCPU quota" in f.message for f in findings)
    only_p = _with_types(plan, ["p5.4xlarge"])
    only_p = only_p.model_copy(update={"agents": [a.model_copy(update={"fleet": a.fleet.model_copy(
        update={"instance_type": "p5.4xlarge"})}) if a.fleet else a for a in only_p.agents]})
    findings = capacity_findings(only_p, CapacityFacts("us-east-1", {"p5.4xlarge": 16}, zones, no_p))
    assert [f.level for f in findings] == ["error", "error"]
