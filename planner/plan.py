"""The plan: what the planner decided for each agent, with the numbers behind it.

This is the contract every later stage reads (render, Pulumi program, gateway config,
operations) and what `deploy plan --json` prints. The keys named in the design contract
(name, route, model, streaming, max_tokens, cache.enabled/ttl, latency.ceiling_s /
p95_estimate_s, cost.per_conversation_usd, cost.monthly_usd.launch/month_12,
break_even_conversations_per_month, why, totals, baseline) keep their meaning; other fields
may be added.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentdeploy.planner.spec import Measure, Policy

Route = Literal["api", "batch", "gpu"]
CacheTTL = Literal["5m", "1h"]
BudgetPolicy = Policy


class _Model(BaseModel):
    # NaN and infinities as JSON's non-constants, never as null: planner/jsonout.py spots them
    # in `model_dump_json`'s text and falls back to the encoder that refuses them.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class CacheDecision(_Model):
    enabled: bool
    ttl: CacheTTL | None = None
    #: Where cache_control breakpoints go, in prefix order: "tools", "system", "conversation".
    breakpoints: list[str] = Field(default_factory=list)
    #: Static prefix tokens the breakpoints cover (system + tools + knowledge).
    prefix_tokens: int = 0
    #: Expected share of requests whose static prefix is read from cache, in the launch month.
    expected_hit_rate: float = 0.0
    #: Launch month: share of first turns finding the static prefix another conversation wrote,
    #: and share of later turns reading the previous turn's conversation breakpoint.
    first_turn_hit_rate: float = 0.0
    conversation_hit_rate: float = 0.0
    #: The model's minimum cacheable prompt length, for the gateway's own check.
    min_cacheable_tokens: int = 0


class LatencyEstimate(_Model):
    ceiling_s: float | None
    #: What the ceiling measures: time to first token (streamed, a person reading) or the
    #: full answer (a backend waiting), or nothing (batch).
    measure: Measure
    #: p95 of the measured quantity (what is compared with the ceiling).
    p95_estimate_s: float
    ttft_p95_s: float
    total_p95_s: float
    #: Route gpu: how long the gateway waits for the fleet's first token before it falls back
    #: to Claude, leaving the fallback's own p95 first token inside the ceiling. None elsewhere.
    self_hosted_ttft_s: float | None = None


class CostItems(_Model):
    """One month's cost, itemised (USD)."""

    uncached_input: float = 0.0
    cache_write: float = 0.0
    cache_read: float = 0.0
    output: float = 0.0
    #: Negative: what the Batch API's discount took off the token items above.
    batch_discount: float = 0.0
    gpu_spot: float = 0.0
    gpu_on_demand: float = 0.0
    #: Claude spend for traffic the gateway sends to the fallback (cold start, spot loss).
    fallback_api: float = 0.0
    #: Engineering time to run a self-hosted fleet (stack setting, default in the catalog).
    ops_overhead: float = 0.0
    total: float = 0.0


class MonthlyUSD(_Model):
    launch: float
    month_12: float


class CostEstimate(_Model):
    per_conversation_usd: float
    monthly_usd: MonthlyUSD
    items: dict[Literal["launch", "month_12"], CostItems]
    #: The realtime-API cost of the same agent (what self-hosting is compared with).
    api_monthly_usd: MonthlyUSD | None = None
    #: The GPU-fleet cost of the same agent where an open model qualifies.
    gpu_monthly_usd: MonthlyUSD | None = None
    #: Month 1 (launch) to month 12 on the decision file's ramp, and their sum: what the route
    #: was chosen on.
    months_usd: list[float] = Field(default_factory=list)
    year_usd: float = 0.0


class SwitchPlan(_Model):
    """Start on the API, move to a fleet once the volume makes it pay."""

    #: The month of the ramp (2-12) from which the fleet is cheaper to run.
    month: int
    #: About where the move pays: the break-even volume.
    conversations_per_month: float
    #: The fleet to move to ("open-model@instance-type").
    to: str
    year_usd_saved: float


class FleetPlan(_Model):
    """A self-hosted agent's GPU fleet: what the Pulumi program and node templates build."""

    open_model: str  # catalog id of the open-weight model
    hf_repo: str  # what vLLM loads
    served_model_name: str
    instance_type: str
    #: Every type the group may launch, chosen first (planner/families.py: the rule), for the overrides.
    instance_types: list[str]
    gpu: str
    on_demand_base_capacity: int
    on_demand_percentage_above_base: int
    spot_allocation_strategy: str = "price-capacity-optimized"
    min_replicas: int
    max_replicas: int
    #: Replicas needed at peak and at average active-hour load.
    peak_replicas: int
    average_replicas: float
    idle_minutes: int
    active_hours_per_day: float
    #: Concurrent requests one replica takes before the latency budget is at risk; the gateway
    #: spills to Claude above it.
    max_concurrency_per_replica: int
    #: The autoscaler's per-replica target (requests waiting + running): the load at which the
    #: planned replica count is exactly enough (planner/fleet.py `target_in_flight`), so target
    #: tracking runs the fleet the plan prices (`deploy simulate` checks it).
    target_queue_per_replica: float
    #: GPUs one replica spans (vLLM's --tensor-parallel-size): the instance's GPU count.
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int
    gpu_memory_utilization: float = 0.9
    shutdown_timeout_s: int = 90
    #: The gateway's breaker for these replicas: a dead one gets at most one trial request per
    #: `probe_interval_s`, and a recovered one serves again within `breaker_max_open_s` (plus the
    #: next request's arrival) even without a health signal — under the 10 s recovery promise.
    probe_interval_s: float = Field(default=2.0, gt=0)
    breaker_max_open_s: float = Field(default=8.0, gt=0)
    cold_start_s: float
    hourly_usd_on_demand: float
    hourly_usd_spot: float


class PaceAlarm(_Model):
    """A daily spend alarm: CloudWatch cannot sum a calendar month, so a threshold is a pace."""

    pct: int
    #: One day's spend over this reaches `pct`% of the gateway's budget in a month.
    daily_usd: float


class BudgetPlan(_Model):
    """The agent's monthly budget, and how it splits between who meters and who bills it."""

    monthly_usd: float
    thresholds_pct: list[int]
    policy: BudgetPolicy
    #: True when the user set the budget; False when derived from projection × headroom.
    user_set: bool
    #: What the gateway meters and enforces: Claude tokens. All of the budget on the api and
    #: batch routes; on route gpu the Claude fallback's share of the launch cost (at least $1).
    gateway_usd: float
    #: What AWS bills and the stack's AWS Budget watches: a fleet's GPU-hour share (0 off gpu).
    aws_usd: float
    #: The policy the gateway enforces: `degrade` with no cheaper model to degrade to blocks.
    gateway_policy: BudgetPolicy
    #: One alarm per threshold, pacing `gateway_usd` over the catalog's days per month.
    pace: list[PaceAlarm]


class QualityDecision(_Model):
    task: str
    wrong_answer_cost: str
    floor_tier: int
    #: "tier-rules" or "evals"
    source: str
    model_tier: int | None = None


class AgentPlan(_Model):
    name: str
    description: str = ""
    route: Route
    #: The model that answers: a Claude model id (api/batch) or the open model's served name (gpu).
    model: str
    provider: Literal["anthropic", "vllm"]
    #: Claude model the gateway falls back to (gpu route), meeting the same quality floor.
    fallback_model: str | None = None
    #: Cheaper Claude model still meeting the floor, for the gateway's `degrade` budget policy.
    degrade_model: str | None = None
    streaming: bool
    max_tokens: int
    cache: CacheDecision
    batch: bool
    latency: LatencyEstimate
    quality: QualityDecision
    cost: CostEstimate
    break_even_conversations_per_month: float | None
    fleet: FleetPlan | None = None
    #: The cheapest qualifying self-hosted option ("open-model@instance-type"), chosen or not:
    #: what the break-even volume and the GPU cost curve refer to.
    gpu_candidate: str | None = None
    #: When self-hosting pays only later in the year: when to move (None: stay on this route).
    switch: SwitchPlan | None = None
    budget: BudgetPlan
    volume: dict[str, float]
    why: list[str]


class Totals(_Model):
    #: Agents plus the stack's fixed infrastructure.
    monthly_usd: MonthlyUSD
    agents_usd: MonthlyUSD | None = None
    infrastructure_usd: float = 0.0


class GatewayDecision(_Model):
    """Whether the stack runs the gateway, and what it costs whatever the traffic."""

    deploy: bool
    #: The gateway's own fixed cost (its tasks, public load balancer, budget store, logs): what
    #: deploying it adds to the stack's fixed cost.
    fixed_usd_per_month: float
    why: list[str]


class StackInfrastructure(_Model):
    """The stack's fixed monthly cost by item (USD), whatever the traffic."""

    items: dict[str, float]
    monthly_usd: float
    gateway: GatewayDecision
    source: str


class Baseline(_Model):
    """The naive setup the plan is compared with: one mid tier for all (a higher tier where an
    agent's floor needs it), realtime, no caching, no batch, clients calling Claude directly."""

    model: str
    #: The model per agent where it differs from `model` (the agent's quality floor).
    models: dict[str, str] = Field(default_factory=dict)
    #: Fixed infrastructure the naive setup still pays (spend alarms), included in monthly_usd.
    infrastructure_usd: float = 0.0
    monthly_usd: MonthlyUSD
    saving_usd: MonthlyUSD
    saving_pct: MonthlyUSD


class CatalogRef(_Model):
    version: str
    as_of: str
    overrides: list[str] = Field(default_factory=list)


class Plan(_Model):
    stack: str
    region: str
    alert_emails: list[str]
    volume_scale: float = 1.0
    agents: list[AgentPlan]
    totals: Totals
    baseline: Baseline
    catalog: CatalogRef
    infrastructure: StackInfrastructure | None = None

    @property
    def deploys_gateway(self) -> bool:
        """The planner's decision (`infrastructure.gateway.deploy`), read by render, the stack,
        its alarms and the ops commands alike; a plan written before the planner decided it had a
        gateway in every stack, so it keeps one."""
        return self.infrastructure is None or self.infrastructure.gateway.deploy

    def agent(self, name: str) -> AgentPlan:
        for a in self.agents:
            if a.name == name:
                return a
        raise KeyError(name)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
