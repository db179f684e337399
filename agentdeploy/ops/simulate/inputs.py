"""What the simulation is built from, per GPU agent: copied from the plan, the decision file, the
catalog, the stack's scale-loop definitions and the gateway's config; the one figure the plan
does not carry (how long a request holds a slot) comes from the planner's own function.

- the fleet (replicas, concurrency cap, cold start, market split, prices): the plan's FleetPlan;
- alarms, policies, node publishing, standby, hooks: `stacks.scaling_rules.fleet_rules(fleet)`,
  what `deploy up` provisions;
- the gateway's wake: the gateway config the stack builds for a provisioned fleet (`wake_rule`);
- traffic: the decision file's volume at launch and its day shape; each request holds a fleet
  slot for the time the planner sized the fleet with (`planner.fleet.replica_for`: the mean
  prompt's prefill and the decode at the planned concurrency), else the plan's p95 answer time;
- spot interruptions: the catalog's `assumptions.spot_interruptions_per_month` (sourced);
- the plan's projection: its launch-month cost items (GPU spot, GPU on-demand, fallback API);
  the fallback share is `fallback_api / api_monthly_usd` (what the fleet's misses cost, over
  what every request would cost on the fallback model) and GPU hours are its dollars over the
  plan's hourly prices. The ops overhead is a fixed fee on both sides and is left out of both.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.ops.simulate.gateway import WakeRule
from agentdeploy.ops.simulate.traffic import daily_weights
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.fleet import prefill_rate, replica_for
from agentdeploy.planner.plan import AgentPlan, FleetPlan, Plan
from agentdeploy.planner.spec import AgentDecision, Spec
from agentdeploy.serving.config import GatewayConfig
from agentdeploy.stacks.scaling_rules import TARGET_HEALTH_INTERVAL_S, TARGET_HEALTHY_THRESHOLD, FleetRules, fleet_rules
from agentdeploy.templates.vllm_args import SPOT_NOTICE_S


@dataclass(frozen=True)
class Planned:
    """The plan's launch-month projection for one fleet (ops overhead left out)."""

    gpu_spot_usd: float
    gpu_on_demand_usd: float
    fallback_api_usd: float
    fallback_share: float
    spot_hours: float
    on_demand_hours: float

    @property
    def total_usd(self) -> float:
        return self.gpu_spot_usd + self.gpu_on_demand_usd + self.fallback_api_usd


@dataclass(frozen=True)
class AgentInputs:
    name: str
    fleet: FleetPlan
    rules: FleetRules
    wake: WakeRule | None
    #: Where `wake` came from ("gateway config"), or why there is none.
    wake_source: str
    #: Seconds from a node's ready hook to the gateway routing to it (see `routable_seconds`).
    routable_s: float
    requests_per_day: float
    #: 24 hourly weights (UTC), mean 1 over the active hours.
    weights: tuple[float, ...]
    service_s: float
    #: Seconds of one replica's compute a request takes (prefill + its share of the decode): a
    #: replica finishes at most 1 / compute_s requests a second, however many slots it has.
    compute_s: float
    fallback_usd_per_request: float
    spot_interruptions_per_month: float
    days_per_month: float
    notice_s: float
    planned: Planned


def planned(agent: AgentPlan, fleet: FleetPlan) -> Planned:
    items = agent.cost.items["launch"]
    api = agent.cost.api_monthly_usd.launch if agent.cost.api_monthly_usd else 0.0
    return Planned(
        gpu_spot_usd=items.gpu_spot,
        gpu_on_demand_usd=items.gpu_on_demand,
        fallback_api_usd=items.fallback_api,
        fallback_share=items.fallback_api / api if api else 0.0,
        spot_hours=items.gpu_spot / fleet.hourly_usd_spot if fleet.hourly_usd_spot else 0.0,
        on_demand_hours=items.gpu_on_demand / fleet.hourly_usd_on_demand if fleet.hourly_usd_on_demand else 0.0,
    )


#: The fleet's target group health check: a registered node is healthy after at most this many
#: checks this far apart.
TARGET_HEALTHY_S = float(TARGET_HEALTH_INTERVAL_S * TARGET_HEALTHY_THRESHOLD)


def routable_seconds(config: GatewayConfig, agent: AgentPlan) -> float:
    """From a node's ready hook to the gateway's first request to it, at worst: the target group's
    health checks, then the gateway's next discovery read (its config's `refresh_s`)."""
    spec = config.agents.get(agent.name)
    upstream = config.upstreams.get(spec.chain[0].upstream) if spec and spec.chain else None
    discovery = upstream.discovery if upstream is not None else None
    return TARGET_HEALTHY_S + (discovery.refresh_s if discovery is not None else 0.0)


#: The fleet's Auto Scaling group name in the simulated gateway config (only provisioning knows
#: the real one; the wake rule does not depend on it).
SIMULATED_GROUP = "simulated-fleet"
SIMULATED_TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/simulated/0"


def gateway_config(plan: Plan, catalog: Catalog) -> GatewayConfig:
    """The config the stack gives its gateway (the provisioned form: each fleet with its group
    and target group)."""
    from agentdeploy.templates.gateway_config import FleetRefs, build_gateway_config

    refs = FleetRefs(asg_name=SIMULATED_GROUP, target_group_arn=SIMULATED_TARGET_GROUP)
    return build_gateway_config(plan, catalog, fleets={a.name: refs for a in plan.agents if a.route == "gpu"})


def wake_rule(config: GatewayConfig, agent: AgentPlan) -> tuple[WakeRule | None, str]:
    """The gateway's wake for this fleet: None when its config has none."""
    spec = config.agents.get(agent.name)
    upstream = config.upstreams.get(spec.chain[0].upstream) if spec and spec.chain else None
    wake = upstream.wake if upstream is not None else None
    if wake is None:
        return None, "none: the gateway config has no wake for this fleet (the alarm path alone wakes it)"
    return WakeRule(capacity=wake.capacity, min_interval_s=wake.min_interval_s), "gateway config"


def request_seconds(agent: AgentPlan, decision: AgentDecision, fleet: FleetPlan, catalog: Catalog) -> tuple[float, float]:
    """(seconds one request holds a fleet slot, seconds of a replica's compute it takes): the
    planner's own figures for this fleet (the replica model it sized the fleet with); the
    plan's p95 answer time and no compute limit where the catalog no longer describes the
    fleet's model on its instance type."""
    instance = catalog.gpu_instances.get(fleet.instance_type)
    model = catalog.open_models.get(fleet.open_model)
    perf = instance.perf.get(model.size_class) if instance is not None and model is not None else None
    if instance is None or model is None or perf is None:
        return agent.latency.total_p95_s, 0.0
    r = replica_for(decision, perf, catalog.assumptions, prefill_rate(perf, instance, model, catalog.assumptions))
    return r.duration_s, r.compute_s


def agent_inputs(plan: Plan, spec: Spec, catalog: Catalog) -> list[AgentInputs]:
    """One entry per GPU agent of the plan, in the plan's order."""
    out: list[AgentInputs] = []
    a = catalog.assumptions
    config = gateway_config(plan, catalog) if any(agent.route == "gpu" for agent in plan.agents) else None
    for agent in plan.agents:
        fleet = agent.fleet
        if agent.route != "gpu" or fleet is None:
            continue
        decision = spec.agents[agent.name]
        requests_month = agent.volume["launch"] * decision.profile.turns
        api = agent.cost.api_monthly_usd.launch if agent.cost.api_monthly_usd else 0.0
        assert config is not None
        wake, source = wake_rule(config, agent)
        service_s, compute_s = request_seconds(agent, decision, fleet, catalog)
        out.append(AgentInputs(
            name=agent.name,
            fleet=fleet,
            rules=fleet_rules(fleet),
            wake=wake,
            wake_source=source,
            routable_s=routable_seconds(config, agent),
            requests_per_day=requests_month / a.days_per_month,
            weights=tuple(daily_weights(decision.volume.resolved_active_hours, decision.volume.resolved_peak_factor,
                                        decision.volume.hourly_shape)),
            service_s=service_s,
            compute_s=compute_s,
            fallback_usd_per_request=api / requests_month if requests_month else 0.0,
            spot_interruptions_per_month=a.spot_interruptions_per_month,
            days_per_month=a.days_per_month,
            notice_s=float(SPOT_NOTICE_S),
            planned=planned(agent, fleet),
        ))
    return out
