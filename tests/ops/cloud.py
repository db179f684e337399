"""Build the cloud side a stack leaves behind, in moto: tagged fleets and published metrics."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_NAMESPACE, ROLE_GPU_FLEET, stack_tags


def launch_template(name: str = "gpu-node", instance_type: str = "g5.xlarge", region: str | None = None) -> None:
    ec2 = boto3.client("ec2", region_name=region)
    existing = ec2.describe_launch_templates()["LaunchTemplates"]
    if any(t["LaunchTemplateName"] == name for t in existing):
        return
    ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": instance_type}
    )


def fleet(
    name: str,
    stack: str | None,
    agent: str | None,
    desired: int = 1,
    min_size: int = 0,
    role: str | None = ROLE_GPU_FLEET,
    instance_type: str = "g5.xlarge",
    region: str | None = None,
) -> None:
    """An Auto Scaling group as the Pulumi program creates it (tags propagated to instances).

    MinSize defaults to 0, a plan's scale-to-zero fleet; a warm floor passes `min_size`; `region`
    defaults to the environment's (us-east-1).
    """
    template = f"lt-{instance_type.replace('.', '-')}"
    launch_template(template, instance_type, region)
    tags = stack_tags(stack, agent, role) if stack else {}
    if not stack and agent:
        tags["agentdeploy:agent"] = agent
    boto3.client("autoscaling", region_name=region).create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=min_size,
        MaxSize=max(desired, 4),
        DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateName": template},
        AvailabilityZones=[f"{region or 'us-east-1'}a"],
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()],
    )


def group(name: str, region: str | None = None) -> dict:
    return boto3.client("autoscaling", region_name=region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ][0]


def put_metric(
    metric: str, stack: str, agent: str, value: float, at: datetime, extra: dict[str, str] | None = None
) -> None:
    dims = [{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}]
    dims += [{"Name": k, "Value": v} for k, v in (extra or {}).items()]
    boto3.client("cloudwatch").put_metric_data(
        Namespace=METRIC_NAMESPACE,
        MetricData=[{"MetricName": metric, "Dimensions": dims, "Timestamp": at, "Value": value}],
    )


def _set_auth_count(url: str, count: str) -> None:
    # text/plain: moto reads the raw body, which a form content type would hide from it.
    req = urllib.request.Request(f"{url}/moto-api/reset-auth", data=count.encode(), method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


@contextmanager
def identity_denied(url: str, *actions: str) -> Iterator[dict[str, str]]:
    """Credentials of an IAM user allowed everything but `actions`, with moto enforcing IAM meanwhile.

    Yields the environment to use them. While enforcing, the dummy `testing` keys are rejected too,
    so read the cloud's state (group(), ...) after the block.
    """
    iam = boto3.client("iam")
    iam.create_user(UserName="restricted")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": list(actions), "Resource": "*"},
        ],
    }
    iam.put_user_policy(UserName="restricted", PolicyName="all-but", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="restricted")["AccessKey"]
    _set_auth_count(url, "0")
    try:
        yield {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    finally:
        _set_auth_count(url, "inf")


@contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stand-in HTTP server on loopback for the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
