"""One agent's planning inputs, worked out once: `AgentContext`.

Route choice, the infeasibility advice, the why-lines and the plan record all read the same
facts about an agent: its resolved audience and latency measure, its quality floor, its volumes
under the what-if scale, what its overrides pin. They are derived here, once per agent, and
travel as one frozen value instead of a dozen positional parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import Route
from agentdeploy.planner.pricers import AgentPricers
from agentdeploy.planner.quality import quality_floor
from agentdeploy.planner.spec import AgentDecision, Audience, Measure, Spec


def volumes(agent: AgentDecision, scale: float) -> tuple[float, float]:
    """Conversations per month at launch and at 12 months, under the what-if scale."""
    return agent.volume.conversations_per_month * scale, agent.volume.month_12 * scale


def effective_route(agent: AgentDecision, catalog: Catalog) -> Route | None:
    """The route the overrides decide: the pinned one, or gpu where an open model or an instance type is pinned."""
    o = agent.overrides
    if o.route:
        return o.route
    if o.model in catalog.open_models or o.instance_type:
        return "gpu"
    return None


def ops_overhead(spec: Spec, catalog: Catalog) -> float:
    """Engineering time per fleet-month: the stack's figure, or the catalog's sourced default."""
    own = spec.stack.ops_overhead_usd_per_fleet_month
    return catalog.assumptions.ops_overhead_usd_per_fleet_month if own is None else own


@dataclass(frozen=True)
class AgentContext:
    """Everything about one agent the planner's steps share; built by `AgentContext.of`."""

    name: str
    agent: AgentDecision
    spec: Spec
    catalog: Catalog
    #: The `--scale` what-if factor the volumes below include.
    scale: float
    launch_v: float
    m12_v: float
    audience: Audience
    measure: Measure
    #: The p95 latency ceiling in seconds (None: batch-tolerant).
    ceiling: float | None
    #: The quality tier a model must reach.
    floor: int
    #: The route the overrides decide, None where the planner chooses.
    route_pin: Route | None
    #: The agent's bills at any volume, each (model, caching, route) and (open model, instance)
    #: worked out once (pricers.py).
    pricers: AgentPricers = field(compare=False, repr=False)

    @classmethod
    def of(cls, name: str, agent: AgentDecision, spec: Spec, catalog: Catalog, scale: float) -> AgentContext:
        launch_v, m12_v = volumes(agent, scale)
        latency = agent.latency
        return cls(
            name=name,
            agent=agent,
            spec=spec,
            catalog=catalog,
            scale=scale,
            launch_v=launch_v,
            m12_v=m12_v,
            audience=latency.resolved_audience,
            measure=latency.resolved_measure,
            ceiling=latency.p95_s,
            floor=quality_floor(agent.quality),
            route_pin=effective_route(agent, catalog),
            pricers=AgentPricers(agent, catalog, ops_overhead(spec, catalog), catalog.assumptions.idle_minutes_default),
        )

    @property
    def pinned(self) -> str | None:
        """The model the overrides pin, Claude or open-weight."""
        return self.agent.overrides.model

    @property
    def margin(self) -> float:
        """max_tokens = p99 output x this margin."""
        return self.catalog.assumptions.max_tokens_margin

    @property
    def ops_overhead(self) -> float:
        return ops_overhead(self.spec, self.catalog)

    @property
    def ops_overhead_is_default(self) -> bool:
        return self.spec.stack.ops_overhead_usd_per_fleet_month is None

    @property
    def idle_minutes(self) -> int:
        return self.catalog.assumptions.idle_minutes_default

    def where(self, *loc: str) -> str:
        """`file:line` of a field under this agent in the decision file."""
        return self.spec.where("agents", self.name, *loc)
