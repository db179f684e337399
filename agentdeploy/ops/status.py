"""`deploy status`: per agent, what is running against what was planned, in one read-only pass.

Fleets are found by tag (never by name), alarms by the Stack dimension or the stack tag, budget
use is month-to-date spend (the stack's Claude spend metric — the gateway's SpendUSD, or the
day totals `deploy spend publish` writes for a gateway-less stack — plus GPU instance hours x catalog
price) against the plan's monthly budget, and the gateway's health is its own /readyz.

An alarm whose only actions are Auto Scaling policies is the fleet's own scaling machinery (target
tracking's AlarmLow/AlarmHigh, scale-to-zero, wake-from-zero): in ALARM it is doing its job, so it
is listed apart (`scaling_alarms`) and never makes a stack unhealthy. A GPU agent of the plan with
no fleet in the cloud does: its traffic can only fall back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentdeploy.naming import DIM_AGENT, DIM_STACK, TAG_AGENT, TAG_STACK
from agentdeploy.ops.aws import AwsClient
from agentdeploy.ops.cost_sources import claude_from_metric, fleet_types, gpu_from_ec2, metered_spend
from agentdeploy.ops.fleets import Fleet, describe_instances, list_fleets
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import Plan

MAX_ALARMS = 500


def is_scaling_action(arn: str) -> bool:
    """An Auto Scaling (EC2 or Application Auto Scaling) scaling policy ARN."""
    return arn.startswith("arn:") and ":autoscaling:" in arn and ":scalingPolicy:" in arn


def scaling_only(alarm: dict[str, Any]) -> bool:
    """True for an alarm that only drives scaling policies (its ALARM state is not a fault)."""
    actions = alarm.get("AlarmActions") or []
    return bool(actions) and all(is_scaling_action(a) for a in actions)


@dataclass
class FleetStatus:
    name: str
    desired: int
    min_size: int
    max_size: int
    in_service: int
    healthy: int
    spot: int
    on_demand: int
    instance_types: list[str]


@dataclass
class AgentStatus:
    agent: str
    route: str
    model: str
    fleet: FleetStatus | None
    budget_monthly_usd: float
    spent_month_usd: float | None
    budget_used_pct: float | None
    alarms: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class GatewayStatus:
    url: str | None
    ready: bool | None
    http_status: int | None = None
    detail: str = ""


@dataclass
class StackStatus:
    stack: str
    region: str
    agents: list[AgentStatus]
    gateway: GatewayStatus
    alarms: list[dict[str, Any]]
    fleets_not_in_plan: list[str]
    #: alarms in ALARM whose actions are only scaling policies: the scale loop at work, not a fault
    scaling_alarms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Why the stack is not healthy (empty when it is)."""
        out = [f"alarm {a['name']} is firing" for a in self.alarms]
        if self.gateway.ready is False:
            out.append("the gateway is not ready")
        for a in self.agents:
            if a.route == "gpu" and a.fleet is None:
                out.append(f"{a.agent}: planned on a GPU fleet, but none is tagged for it")
            elif a.fleet is not None and a.fleet.healthy < a.fleet.desired:
                out.append(f"{a.agent}: {a.fleet.healthy} of {a.fleet.desired} desired instance(s) healthy")
        return out

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy, "problems": self.problems}


def fleet_status(fleet: Fleet, instances: dict[str, dict]) -> FleetStatus:
    lifecycles = [instances.get(i.instance_id, {}).get("InstanceLifecycle") for i in fleet.instances]
    return FleetStatus(
        name=fleet.name,
        desired=fleet.desired,
        min_size=fleet.min_size,
        max_size=fleet.max_size,
        in_service=fleet.in_service,
        healthy=sum(1 for i in fleet.instances if i.healthy),
        spot=sum(1 for lc in lifecycles if lc == "spot"),
        on_demand=sum(1 for lc in lifecycles if lc != "spot"),
        instance_types=sorted({i.instance_type for i in fleet.instances}),
    )


def gateway_status(url: str | None, timeout_s: float = 3.0) -> GatewayStatus:
    if not url:
        return GatewayStatus(url=None, ready=None, detail="gateway URL unknown (pass --gateway-url)")
    import httpx

    target = url.rstrip("/") + "/readyz"
    try:
        resp = httpx.get(target, timeout=timeout_s)
    except httpx.HTTPError as err:
        return GatewayStatus(url=url, ready=False, detail=f"unreachable ({type(err).__name__})")
    return GatewayStatus(url=url, ready=resp.status_code == 200, http_status=resp.status_code, detail=resp.text[:200])


def stack_alarms(cw: AwsClient, stack: str) -> list[dict[str, Any]]:
    """Alarms in ALARM that belong to the stack (Stack dimension, or the stack tag); each says
    whether it only drives scaling policies (`scaling`)."""
    found: list[dict[str, Any]] = []
    metric_alarms = cw.paginate("describe_alarms", "MetricAlarms", StateValue="ALARM", AlarmTypes=["MetricAlarm"])
    composite = cw.paginate("describe_alarms", "CompositeAlarms", StateValue="ALARM", AlarmTypes=["CompositeAlarm"])
    for alarm in (metric_alarms + composite)[:MAX_ALARMS]:
        dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        for metric in alarm.get("Metrics", []):  # metric-math alarms
            stat = metric.get("MetricStat", {}).get("Metric", {})
            dims.update({d["Name"]: d["Value"] for d in stat.get("Dimensions", [])})
        agent = dims.get(DIM_AGENT)
        mine = dims.get(DIM_STACK) == stack
        if not mine:
            tags = {t["Key"]: t["Value"] for t in cw.call("list_tags_for_resource", ResourceARN=alarm["AlarmArn"]).get("Tags", [])}
            mine = tags.get(TAG_STACK) == stack
            agent = agent or tags.get(TAG_AGENT)
        if mine:
            updated = alarm.get("StateUpdatedTimestamp")
            found.append(
                {
                    "name": alarm["AlarmName"],
                    "agent": agent,
                    "reason": alarm.get("StateReason", ""),
                    "since": updated.isoformat() if isinstance(updated, datetime) else updated,
                    "scaling": scaling_only(alarm),
                }
            )
    return sorted(found, key=lambda a: a["name"])


def collect_status(
    plan: Plan,
    catalog: Catalog,
    stack: str,
    region: str,
    autoscaling: AwsClient,
    ec2: AwsClient,
    cloudwatch: AwsClient,
    gateway_url: str | None,
    now: datetime | None = None,
) -> StackStatus:
    now = now or datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    fleets = list_fleets(autoscaling, stack)
    instances = describe_instances(ec2, [i.instance_id for f in fleets for i in f.instances])
    by_agent = {f.agent: f for f in fleets if f.agent}
    names = [a.name for a in plan.agents]
    claude = claude_from_metric(cloudwatch, plan, names, stack, month_start, now)
    gpu, _ = gpu_from_ec2(ec2, catalog, stack, month_start, now, autoscaling, fleet_types(plan))
    found = stack_alarms(cloudwatch, stack)
    alarms = [al for al in found if not al["scaling"]]
    agents: list[AgentStatus] = []
    for a in plan.agents:
        fleet = by_agent.get(a.name)
        notes: list[str] = []
        if a.route == "gpu" and fleet is None:
            notes.append("no GPU fleet tagged for this agent (not provisioned yet, or another region?)")
        spent: float | None = None
        if a.name in claude or a.name in gpu:
            spent = claude.get(a.name, (0.0, ""))[0] + (gpu[a.name].usd if a.name in gpu else 0.0)
        else:
            notes.append(metered_spend(plan).missing)
        agents.append(
            AgentStatus(
                agent=a.name,
                route=a.route,
                model=a.model,
                fleet=fleet_status(fleet, instances) if fleet else None,
                budget_monthly_usd=a.budget.monthly_usd,
                spent_month_usd=None if spent is None else round(spent, 4),
                budget_used_pct=None if spent is None or not a.budget.monthly_usd else round(100 * spent / a.budget.monthly_usd, 1),
                alarms=[al["name"] for al in alarms if al["agent"] == a.name],
                notes=notes,
            )
        )
    return StackStatus(
        stack=stack,
        region=region,
        agents=agents,
        gateway=gateway_status(gateway_url) if gateway_url or plan.deploys_gateway else GatewayStatus(
            url=None, ready=None, detail="none: the plan deploys no gateway (clients call Claude directly)"),
        alarms=alarms,
        fleets_not_in_plan=sorted(f.name for f in fleets if f.agent not in names),
        scaling_alarms=[al for al in found if al["scaling"]],
    )
