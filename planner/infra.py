"""The stack's fixed cost, and whether it runs the gateway at all.

A stack pays for more than tokens and GPU hours: the NAT gateway its private subnets reach the
internet through, the load balancers, the gateway's tasks, the budget store the gateway's
replicas share, CloudWatch alarms and logs, and the weights every booting GPU replica pulls
through the NAT. These go into the plan's totals and its comparison with the baseline, and each
agent's AWS budget carries its share.

The gateway earns its fixed cost on a fleet (fallback to Claude, spill above capacity) or where
a budget must be enforced at run time. A small API-only stack whose budgets only alert gets none:
clients call Claude directly with the rendered per-agent config, and spend is watched by alarms
on the Usage and Cost API. The trade is stated in `why`: no runtime budget enforcement, no
fallback.
"""

from __future__ import annotations

from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import AgentPlan, GatewayDecision, StackInfrastructure
from agentdeploy.planner.spec import Spec

#: What going without the gateway means, in every plan that does.
WITHOUT = (
    "without it: clients call Claude directly with each agent's rendered config (model, caching, max_tokens); spend is watched "
    "by alarms on the Usage and Cost API; there is no run-time budget enforcement and no fallback when Claude errors"
)


def _usd(x: float) -> float:
    return round(x, 2)


def gateway_items(catalog: Catalog) -> dict[str, float]:
    """What running the gateway costs a month: its tasks, public load balancer, budget store, logs."""
    i = catalog.infrastructure
    h = i.hours_per_month
    task = i.gateway_task_vcpu * i.fargate_vcpu_usd_per_hour + i.gateway_task_gb * i.fargate_gb_usd_per_hour
    return {
        "gateway_tasks": _usd(i.gateway_tasks * task * h),
        "gateway_load_balancer": _usd((i.alb_usd_per_hour + i.alb_lcu_usd_per_hour) * h),
        "budget_store": _usd(i.budget_store_usd_per_hour * h),
        "gateway_logs": _usd(i.gateway_logs_gb_per_month * i.cloudwatch_logs_usd_per_gb),
    }


def replica_starts_per_month(plan: AgentPlan, days_per_month: float) -> float:
    """Every replica started in a day: all of them after a night at zero, the extra ones otherwise."""
    fleet = plan.fleet
    if fleet is None:
        return 0.0
    per_day = fleet.peak_replicas if fleet.active_hours_per_day < 24 else max(0, fleet.peak_replicas - 1)
    return per_day * days_per_month


def fleet_items(plans: list[AgentPlan], catalog: Catalog) -> dict[str, float]:
    """The fleets' internal load balancer and the weights each boot pulls through the NAT."""
    gpu = [p for p in plans if p.fleet is not None]
    if not gpu:
        return {}
    i, a = catalog.infrastructure, catalog.assumptions
    gb = 0.0
    for p in gpu:
        assert p.fleet is not None
        params_b = catalog.open_models[p.fleet.open_model].params_b
        gb += replica_starts_per_month(p, a.days_per_month) * params_b * a.weight_bytes_per_param
    return {
        "fleet_load_balancer": _usd((i.alb_usd_per_hour + i.alb_lcu_usd_per_hour) * i.hours_per_month),
        "nat_data_model_weights": _usd(gb * i.nat_usd_per_gb),
    }


def alarm_usd(plans: list[AgentPlan], catalog: Catalog) -> float:
    """One spend alarm per budget threshold per agent."""
    return _usd(sum(len(p.budget.thresholds_pct) for p in plans) * catalog.infrastructure.cloudwatch_alarm_usd_per_month)


def decide_gateway(spec: Spec, plans: list[AgentPlan], catalog: Catalog) -> GatewayDecision:
    """Deploy the gateway where it earns its fixed cost; otherwise say what going without it means."""
    own = gateway_items(catalog)
    nat = _usd(catalog.infrastructure.nat_gateway_usd_per_hour * catalog.infrastructure.hours_per_month)
    fixed = _usd(sum(own.values()) + nat)
    gpu = [p.name for p in plans if p.route == "gpu"]
    if gpu:
        return GatewayDecision(deploy=True, fixed_usd_per_month=fixed, why=[
            f"gateway deployed: {', '.join(gpu)} run{'s' if len(gpu) == 1 else ''} on a fleet whose fallback to Claude and "
            f"spill above capacity go through it (${fixed:,.2f}/month fixed: tasks, load balancer, budget store, NAT)"
        ])
    pinned = spec.stack.gateway
    if pinned is not None:
        verb = "deployed" if pinned else "left out"
        return GatewayDecision(deploy=pinned, fixed_usd_per_month=fixed, why=[f"gateway {verb}: pinned in stack.gateway (${fixed:,.2f}/month fixed)"]
                               + ([] if pinned else [WITHOUT]))
    enforced = [p for p in plans if p.budget.gateway_policy in ("block", "degrade")]
    headroom = spec.stack.budget_headroom
    # what run-time enforcement can save: the overrun above the budget an alarm-only setup may
    # leak before someone acts, at most the headroom's share of the 12-month spend
    guarded = _usd(sum((headroom - 1) / headroom * p.cost.monthly_usd.month_12 for p in enforced))
    if enforced and guarded >= fixed:
        names = ", ".join(p.name for p in enforced)
        return GatewayDecision(deploy=True, fixed_usd_per_month=fixed, why=[
            f"gateway deployed: {names} need run-time budget enforcement (policy block/degrade) on up to ${guarded:,.2f}/month "
            f"of overrun, more than its ${fixed:,.2f}/month fixed cost"
        ])
    cost = f"its ${fixed:,.2f}/month fixed cost (tasks, load balancer, budget store, NAT)"
    reason = (
        f"run-time enforcement (policy block/degrade) guards at most ${guarded:,.2f}/month of overrun, less than {cost}" if enforced
        else f"every budget only alerts, so the gateway would enforce nothing to earn {cost}"
    )
    return GatewayDecision(deploy=False, fixed_usd_per_month=fixed, why=[f"no gateway: every agent is on the Claude API and {reason}", WITHOUT])


def infrastructure(spec: Spec, plans: list[AgentPlan], catalog: Catalog) -> StackInfrastructure:
    gateway = decide_gateway(spec, plans, catalog)
    items: dict[str, float] = {}
    fleets = fleet_items(plans, catalog)
    if gateway.deploy or fleets:
        i = catalog.infrastructure
        items["nat_gateway"] = _usd(i.nat_gateway_usd_per_hour * i.hours_per_month)
    if gateway.deploy:
        items.update(gateway_items(catalog))
    items.update(fleets)
    items["spend_alarms"] = alarm_usd(plans, catalog)
    return StackInfrastructure(items=items, monthly_usd=_usd(sum(items.values())), gateway=gateway, source=catalog.infrastructure.source)


def shares(infra: StackInfrastructure, plans: list[AgentPlan]) -> dict[str, float]:
    """Each agent's share of the fixed cost: the fleets' own items split among GPU agents, the rest evenly."""
    fleet_keys = ("fleet_load_balancer", "nat_data_model_weights")
    fleet_usd = sum(v for k, v in infra.items.items() if k in fleet_keys)
    shared = infra.monthly_usd - fleet_usd
    gpu = [p.name for p in plans if p.fleet is not None]
    out = {p.name: shared / len(plans) for p in plans}
    for name in gpu:
        out[name] += fleet_usd / len(gpu)
    return {k: round(v, 2) for k, v in out.items()}
