"""Find a GPU fleet's nodes in AWS, so the gateway routes to each node directly.

Behind one load balancer URL the gateway would see a fleet as one replica with one node's
concurrency cap, and its overload prediction would read one random node. Here it reads the
fleet's target group (DescribeTargetHealth: which instances are healthy, which draining) or,
without one, its Auto Scaling group (DescribeAutoScalingGroups: InService instances), turns
the instance IDs into private IPs (DescribeInstances, only for IDs not seen before: an
instance keeps its private IP for life), and hands `http://<ip>:<port>` for every routable
node to the upstream. Everything else (per-node load, overload prediction, the node agent's
/healthz, breakers, continuation on another node) is the upstream's, as for static replicas.

`decide_targets` is the decision, pure; `AwsFleetReader.read` makes the calls (blocking boto3,
so it runs in a worker thread); `refresh` keeps the last known list when a read fails and
counts the failure: AWS trouble never takes the gateway down nor empties a fleet.

API cost per fleet and gateway task at the default 5 s: 0.2 DescribeTargetHealth a second,
DescribeInstances only when a new instance appears. EC2's non-mutating calls refill at 20 a
second per account and region (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html,
as of 2026-12); Elastic Load Balancing publishes no per-call rate, and throttling is one more
failed read that keeps the last list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agentdeploy.serving.config import DiscoverySpec
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.upstreams import Upstream

log = logging.getLogger("agentdeploy.gateway.discovery")

#: Target group states that take new requests. `initial` (registering, checks under way),
#: `unhealthy`, `unused` (no load balancer, zone not enabled) and `unavailable` do not.
ROUTABLE_STATES = frozenset({"healthy"})
#: Deregistering: requests already on it finish; no new ones.
DRAINING_STATE = "draining"
#: Auto Scaling lifecycle states of a node on its way out (scale-in, spot, refresh).
LEAVING_PREFIX = "Terminating"


@dataclass(frozen=True, slots=True)
class Discovered:
    """One read of a fleet: the nodes to route to, and those known to be draining."""

    urls: tuple[str, ...]
    draining: tuple[str, ...] = ()
    #: Instance IDs seen without a private IP yet (DescribeInstances pending or lagging).
    unresolved: tuple[str, ...] = ()


def node_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


def wanted_instances(health: Sequence[Mapping[str, Any]] | None, groups: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The instance IDs an answer names (the ones whose addresses are needed), in order."""
    ids: list[str] = []
    for d in health or ():
        tid = str(d.get("Target", {}).get("Id", ""))
        if tid.startswith("i-"):
            ids.append(tid)
    for g in groups or ():
        ids.extend(str(i["InstanceId"]) for i in g.get("Instances", ()))
    return list(dict.fromkeys(ids))


def decide_targets(health: Sequence[Mapping[str, Any]] | None, groups: Sequence[Mapping[str, Any]] | None,
                   addresses: Mapping[str, str], port: int) -> Discovered:
    """Which nodes take new requests (pure).

    `health`: DescribeTargetHealth's TargetHealthDescriptions (None: no target group); when
    given, it decides: `healthy` routes, `draining` is listed as draining, anything else is
    left out. `groups`: DescribeAutoScalingGroups' groups, read only without a target group:
    InService + Healthy routes, Terminating* drains. `addresses`: instance ID -> private IP.
    """
    routable: list[str] = []
    draining: list[str] = []
    if health is not None:
        for d in health:
            tid = str(d.get("Target", {}).get("Id", ""))
            state = str(d.get("TargetHealth", {}).get("State", ""))
            if state in ROUTABLE_STATES:
                routable.append(tid)
            elif state == DRAINING_STATE:
                draining.append(tid)
    else:
        for g in groups or ():
            for inst in g.get("Instances", ()):
                life = str(inst.get("LifecycleState", ""))
                if life == "InService" and inst.get("HealthStatus") == "Healthy":
                    routable.append(str(inst["InstanceId"]))
                elif life.startswith(LEAVING_PREFIX):
                    draining.append(str(inst["InstanceId"]))
    unresolved = [i for i in routable + draining if i not in addresses]
    return Discovered(urls=tuple(sorted({node_url(addresses[i], port) for i in routable if i in addresses})),
                      draining=tuple(sorted({node_url(addresses[i], port) for i in draining if i in addresses})),
                      unresolved=tuple(unresolved))


def aws_client(service: str, region: str | None) -> Any:
    """A boto3 client with short timeouts and few retries: a read that cannot answer within
    seconds is worth less than the next one. Endpoint and credentials from the environment."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.session.Session().client(service, region_name=region, config=config)


class AwsFleetReader:
    """The AWS side of one fleet's discovery. Blocking: call `read` from a worker thread."""

    def __init__(self, spec: DiscoverySpec) -> None:
        self.spec = spec
        self._clients: dict[str, Any] = {}
        #: instance ID -> private IP, for the instances the last answer named.
        self.addresses: dict[str, str] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = aws_client(service, self.spec.region)
        return self._clients[service]

    def read(self) -> Discovered:
        spec = self.spec
        health: list[dict[str, Any]] | None = None
        groups: list[dict[str, Any]] | None = None
        if spec.target_group_arn:
            health = self._client("elbv2").describe_target_health(TargetGroupArn=spec.target_group_arn)["TargetHealthDescriptions"]
        else:
            groups = self._client("autoscaling").describe_auto_scaling_groups(
                AutoScalingGroupNames=[spec.asg_name])["AutoScalingGroups"]
        wanted = wanted_instances(health, groups)
        self.addresses = {i: ip for i, ip in self.addresses.items() if i in wanted}
        missing = [i for i in wanted if i not in self.addresses]
        if missing:
            self.addresses.update(self._private_ips(missing))
        return decide_targets(health, groups, self.addresses, spec.port)

    def _private_ips(self, ids: list[str]) -> dict[str, str]:
        # A filter, not InstanceIds: an ID that is already gone is left out instead of failing the call.
        pages = self._client("ec2").get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-id", "Values": ids}])
        return {inst["InstanceId"]: inst["PrivateIpAddress"]
                for page in pages for res in page["Reservations"] for inst in res["Instances"]
                if inst.get("PrivateIpAddress")}


def error_kind(err: BaseException) -> str:
    """A short label for a failed read: the AWS error code when there is one."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(err).__name__


async def refresh(up: Upstream, reader: AwsFleetReader, metrics: GatewayMetrics) -> Discovered | None:
    """Read once and apply; None when the read failed (the last known nodes stay)."""
    try:
        found = await asyncio.to_thread(reader.read)
    except Exception as err:  # noqa: BLE001 - discovery must never take the gateway down
        kind = error_kind(err)
        metrics.discovery_errors.inc((up.name, kind))
        log.warning(orjson.dumps({"event": "discovery_failed", "upstream": up.name, "error": kind,
                                  "detail": str(err)[:300], "kept": [t.url for t in up.targets]}).decode())
        return None
    if up.set_discovered(list(found.urls)):
        log.info(orjson.dumps({"event": "discovered", "upstream": up.name, "nodes": list(found.urls),
                               "draining": list(found.draining)}).decode())
    metrics.discovered.set((up.name,), len(found.urls))
    return found


async def discover_forever(up: Upstream, reader: AwsFleetReader, metrics: GatewayMetrics) -> None:
    """Refresh every `refresh_s` until cancelled."""
    assert up.spec.discovery is not None
    while True:
        await refresh(up, reader, metrics)
        await asyncio.sleep(up.spec.discovery.refresh_s)


#: How long the gateway's start waits for each fleet's first read (a read that cannot answer
#: by then is retried by the loop; the boto3 timeouts bound it anyway).
FIRST_READ_S = 5.0


async def first_reads(upstreams: Mapping[str, Upstream], readers: Mapping[str, AwsFleetReader], metrics: GatewayMetrics,
                      timeout_s: float = FIRST_READ_S) -> None:
    """Read every fleet once before the gateway takes requests, so its first requests see the
    nodes already serving instead of falling back (and asking a running fleet to wake)."""
    tasks = [asyncio.ensure_future(refresh(upstreams[name], reader, metrics)) for name, reader in readers.items()]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s)


def readers_for(upstreams: Iterable[Upstream], previous: Mapping[str, AwsFleetReader]) -> dict[str, AwsFleetReader]:
    """One reader per discovering upstream; an unchanged spec keeps its reader (clients, addresses)."""
    out: dict[str, AwsFleetReader] = {}
    for up in upstreams:
        spec = up.spec.discovery
        if spec is None:
            continue
        old = previous.get(up.name)
        out[up.name] = old if old is not None and old.spec == spec else AwsFleetReader(spec)
    return out
