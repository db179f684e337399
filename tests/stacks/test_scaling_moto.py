"""The fleet's alarms and scaling policies, exactly as the stack registers them, sent to moto's
server the way the provider would (PutMetricAlarm, PutScalingPolicy): accepted, and described
back with the same definitions."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from tests.stacks.harness import Recorded, run_mixed
from tests.support.moto import REGION, aws, moto_server  # noqa: F401  (fixtures)

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
POLICY = "aws:autoscaling/policy:Policy"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_mixed(tmp_path_factory.mktemp("scaling-moto"))


def _fleet_alarms(run) -> list[Recorded]:
    alarms = [r for r in run.mocks.of_type(ALARM) if r.name.startswith("fleet-")]
    assert {r.name.rsplit("-", 1)[-1] for r in alarms} == {"wake", "idle", "silent", "healthy", "starved"}
    return alarms


def _dimensions(dims: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in dims.items()]


def put_metric_alarm_request(inputs: dict[str, Any]) -> dict[str, Any]:
    """The provider's PutMetricAlarm call for a MetricAlarm's inputs."""
    req: dict[str, Any] = {
        "AlarmName": inputs["name"], "AlarmDescription": inputs["alarmDescription"],
        "ComparisonOperator": inputs["comparisonOperator"], "Threshold": float(inputs["threshold"]),
        "EvaluationPeriods": int(inputs["evaluationPeriods"]), "DatapointsToAlarm": int(inputs["datapointsToAlarm"]),
        "TreatMissingData": inputs["treatMissingData"], "AlarmActions": list(inputs["alarmActions"]),
        "OKActions": list(inputs.get("okActions", [])), "ActionsEnabled": True,
    }
    if "metricQueries" not in inputs:
        req.update(Namespace=inputs["namespace"], MetricName=inputs["metricName"], Statistic=inputs["statistic"],
                   Period=int(inputs["period"]), Dimensions=_dimensions(inputs["dimensions"]))
        return req
    req["Metrics"] = [
        {"Id": q["id"], "ReturnData": q["returnData"],
         "MetricStat": {"Metric": {"Namespace": q["metric"]["namespace"], "MetricName": q["metric"]["metricName"],
                                   "Dimensions": _dimensions(q["metric"]["dimensions"])},
                        "Period": int(q["metric"]["period"]), "Stat": q["metric"]["stat"]}}
        if q.get("metric") else
        {"Id": q["id"], "ReturnData": q["returnData"], "Expression": q["expression"], "Label": q["label"]}
        for q in inputs["metricQueries"]]
    return req


def test_every_fleet_alarm_is_accepted_and_described_back(aws, run) -> None:  # noqa: F811
    cw = boto3.client("cloudwatch", region_name=REGION)
    sent = {}
    for alarm in _fleet_alarms(run):
        req = put_metric_alarm_request(alarm.inputs)
        cw.put_metric_alarm(**req)
        sent[req["AlarmName"]] = req
    described = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=list(sent))["MetricAlarms"]}
    assert set(described) == set(sent)
    for name, req in sent.items():
        got = described[name]
        for key in ("ComparisonOperator", "Threshold", "EvaluationPeriods", "DatapointsToAlarm", "TreatMissingData",
                    "AlarmActions", "OKActions"):
            assert got[key] == req[key], (name, key)
        if "Metrics" in req:
            assert [(m["Id"], m.get("Expression"), m.get("ReturnData")) for m in got["Metrics"]] == [
                (m["Id"], m.get("Expression"), m["ReturnData"]) for m in req["Metrics"]], name
            assert [m["MetricStat"] for m in got["Metrics"] if "MetricStat" in m] == [
                m["MetricStat"] for m in req["Metrics"] if "MetricStat" in m], name
        else:
            assert (got["MetricName"], got["Statistic"], got["Period"]) == (req["MetricName"], req["Statistic"], req["Period"])


def put_scaling_policy_request(inputs: dict[str, Any]) -> dict[str, Any]:
    """The provider's PutScalingPolicy call for a Policy's inputs."""
    req: dict[str, Any] = {"AutoScalingGroupName": inputs["autoscalingGroupName"], "PolicyName": inputs["name"],
                           "PolicyType": inputs["policyType"]}
    if "estimatedInstanceWarmup" in inputs:
        req["EstimatedInstanceWarmup"] = int(inputs["estimatedInstanceWarmup"])
    if inputs["policyType"] == "TargetTrackingScaling":
        conf = inputs["targetTrackingConfiguration"]
        spec = conf["customizedMetricSpecification"]
        req["TargetTrackingConfiguration"] = {
            "TargetValue": float(conf["targetValue"]), "DisableScaleIn": conf["disableScaleIn"],
            "CustomizedMetricSpecification": {
                "Namespace": spec["namespace"], "MetricName": spec["metricName"], "Statistic": spec["statistic"],
                "Dimensions": [{"Name": d["name"], "Value": d["value"]} for d in spec["metricDimensions"]]}}
        return req
    req["AdjustmentType"] = inputs["adjustmentType"]
    if inputs["policyType"] == "StepScaling":
        req["StepAdjustments"] = [
            {"ScalingAdjustment": int(s["scalingAdjustment"]),
             **({"MetricIntervalLowerBound": float(s["metricIntervalLowerBound"])} if "metricIntervalLowerBound" in s else {}),
             **({"MetricIntervalUpperBound": float(s["metricIntervalUpperBound"])} if "metricIntervalUpperBound" in s else {})}
            for s in inputs["stepAdjustments"]]
    else:
        req.update(ScalingAdjustment=int(inputs["scalingAdjustment"]), Cooldown=int(inputs["cooldown"]))
    return req


def test_every_fleet_policy_is_accepted_and_described_back(aws, run) -> None:  # noqa: F811
    policies = [r for r in run.mocks.of_type(POLICY) if r.name.startswith("fleet-")]
    groups = sorted({p.inputs["autoscalingGroupName"] for p in policies})
    assert len(groups) == 2  # the spot group and its on-demand standby
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_launch_template(LaunchTemplateName="fleet", LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                                 "InstanceType": "g6.xlarge"})
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    for group in groups:
        autoscaling.create_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=2, DesiredCapacity=0,
                                              LaunchTemplate={"LaunchTemplateName": "fleet"},
                                              AvailabilityZones=[f"{REGION}a"])
    sent = {}
    for policy in policies:
        req = put_scaling_policy_request({**policy.inputs, "name": policy.name})
        autoscaling.put_scaling_policy(**req)
        sent[req["PolicyName"]] = req
    described = {p["PolicyName"]: p for p in autoscaling.describe_policies()["ScalingPolicies"]}
    assert set(described) == set(sent)
    for name, req in sent.items():
        got = described[name]
        assert (got["AutoScalingGroupName"], got["PolicyType"]) == (req["AutoScalingGroupName"], req["PolicyType"])
        for key in ("AdjustmentType", "StepAdjustments", "ScalingAdjustment", "Cooldown", "EstimatedInstanceWarmup"):
            if key in req:
                assert got[key] == req[key], (name, key)
        if "TargetTrackingConfiguration" in req:
            assert got["TargetTrackingConfiguration"] == req["TargetTrackingConfiguration"], name
