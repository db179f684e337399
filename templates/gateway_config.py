"""The plan, rendered as the gateway's config (`agentdeploy.serving.config.GatewayConfig`).

`build_gateway_config(plan, catalog, ...)` maps each AgentPlan onto an ordered upstream chain,
limits, cache and budget settings, with per-model prices from the catalog. It copies what the
plan decided (the self-hosted first-token budget, the gateway's share of the budget and its
effective policy) and decides only what the plan leaves open:

- Anthropic upstream: base URL `https://api.anthropic.com`, key from env `ANTHROPIC_API_KEY`.
- vLLM replicas: what the caller knows about where a fleet answers (static URLs, a replicas
  file the gateway re-reads, the node agent's health port), and the env var its key is in
  (`VLLM_API_KEY` unless the caller names one per fleet). For a provisioned fleet (`fleets`:
  its group and target group) the gateway finds the nodes itself (`discovery`, every
  DISCOVERY_REFRESH_S, on VLLM_PORT, with the node agent's /healthz on NODE_HEALTH_PORT) and
  wakes the group from zero (`wake`: to max(1, the plan's min_replicas), at most once per
  WAKE_MIN_INTERVAL_S).
- Client keys: `deploy render` reads them from env `AGENTDEPLOY_KEY_<AGENT>` and passes only
  `sha256:<hex>` hashes in; keys shared by every agent come in as `shared_key_hashes`.
- Latency: the last entry of a chain gets the generous `first_byte_timeout_s` (a late answer
  beats none).

Pure: no environment, no I/O (`client_key_hashes_from_env` is the one reader, kept apart).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import ANTHROPIC_KEY_ENV, NODE_HEALTH_PORT, VLLM_KEY_ENV, VLLM_PORT, client_key_env
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import AgentPlan, Plan
from agentdeploy.serving.auth import hash_key
from agentdeploy.serving.config import (
    ANTHROPIC_URL,
    BREAKPOINTS,
    AgentSpec,
    BatchSpec,
    BreakerSpec,
    BudgetSpec,
    BudgetStoreSpec,
    CacheSpec,
    ChainEntry,
    DiscoverySpec,
    GatewayConfig,
    ListenSpec,
    ModelSpec,
    SecretRef,
    UpstreamSpec,
    WakeSpec,
)

#: The name of the one Anthropic upstream every Claude chain entry uses.
ANTHROPIC_UPSTREAM = "anthropic"
#: Seconds between the gateway's reads of a fleet's nodes: the target group re-checks a node
#: every 15 s, so reading faster buys little; one DescribeTargetHealth per read.
DISCOVERY_REFRESH_S = 5.0
#: At most one wake call per fleet this often: a burst of requests against a fleet at zero
#: makes one SetDesiredCapacity, and a failed one is retried no sooner.
WAKE_MIN_INTERVAL_S = 30.0


@dataclass(frozen=True)
class FleetRefs:
    """Where a provisioned fleet lives (what only provisioning knows): its Auto Scaling group
    and, when it has one, its target group."""

    asg_name: str
    target_group_arn: str | None = None


def fleet_discovery(region: str, refs: FleetRefs) -> DiscoverySpec:
    """How the gateway finds the fleet's nodes: the target group's health when there is one
    (it covers the spot group and its on-demand standby alike), else the group's instances."""
    if refs.target_group_arn:
        return DiscoverySpec(region=region, target_group_arn=refs.target_group_arn, refresh_s=DISCOVERY_REFRESH_S, port=VLLM_PORT)
    return DiscoverySpec(region=region, asg_name=refs.asg_name, refresh_s=DISCOVERY_REFRESH_S, port=VLLM_PORT)


def fleet_wake(region: str, refs: FleetRefs, agent: AgentPlan) -> WakeSpec:
    """The gateway's own wake: the group to raise from zero, to the plan's floor (at least one)."""
    floor = agent.fleet.min_replicas if agent.fleet else 0
    return WakeSpec(asg_name=refs.asg_name, capacity=max(1, floor), min_interval_s=WAKE_MIN_INTERVAL_S, region=region)


#: Shortest client key render accepts: 32 characters (`deploy keygen` makes 43 of base64url,
#: 256 random bits), so a key cannot be guessed within any rate limit.
MIN_CLIENT_KEY_CHARS = 32


def generate_client_key() -> str:
    """A client key with 256 bits from the OS's CSPRNG, URL-safe."""
    import secrets

    return "adk_" + secrets.token_urlsafe(32)


def check_client_key_lengths(keys: dict[str, list[str]]) -> None:
    """Refuse short keys, naming the entry and never the key (agentdeploy:gatewayClientKeys,
    or AGENTDEPLOY_KEY_<AGENT> when rendering)."""
    short = [f"{agent} (key {i + 1}: {len(k)} characters)" for agent, ks in sorted(keys.items())
             for i, k in enumerate(ks) if len(k) < MIN_CLIENT_KEY_CHARS]
    if short:
        raise InvalidInput(
            f"client keys shorter than {MIN_CLIENT_KEY_CHARS} characters",
            details=short, hint="make keys with `deploy keygen` (256 random bits each) and set them again")


def client_key_hashes_from_env(agents: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Per-agent key hashes from AGENTDEPLOY_KEY_<AGENT> (comma-separated values allowed)."""
    env = os.environ if environ is None else environ
    keys = {agent: [k.strip() for k in env.get(client_key_env(agent), "").split(",") if k.strip()] for agent in agents}
    check_client_key_lengths({client_key_env(agent): ks for agent, ks in keys.items()})
    return {agent: [hash_key(k) for k in ks] for agent, ks in keys.items()}


def claude_model_spec(catalog: Catalog, model_id: str) -> ModelSpec:
    """A Claude model's five prices and limits, as the gateway's meter and checks read them."""
    m = catalog.claude(model_id)
    return ModelSpec(**m.prices().model_dump(), context_tokens=m.context_tokens,
                     min_cacheable_tokens=m.min_cacheable_tokens)


def vllm_upstream_name(agent: str) -> str:
    return f"vllm-{agent}"


class _ConfigBuilder:
    """Collects upstreams and models as the agents' chains name them (each defined once)."""

    def __init__(self, catalog: Catalog, anthropic_base_url: str, anthropic_key: SecretRef | None) -> None:
        self.catalog = catalog
        self.anthropic_base_url = anthropic_base_url
        self.anthropic_key = anthropic_key or SecretRef(env=ANTHROPIC_KEY_ENV)
        self.upstreams: dict[str, UpstreamSpec] = {}
        self.models: dict[str, ModelSpec] = {}

    def claude_entry(self, model_id: str, ttft: float | None = None) -> ChainEntry:
        if ANTHROPIC_UPSTREAM not in self.upstreams:
            self.upstreams[ANTHROPIC_UPSTREAM] = UpstreamSpec(
                kind="anthropic", base_url=self.anthropic_base_url, api_key=self.anthropic_key)
        self.models.setdefault(model_id, claude_model_spec(self.catalog, model_id))
        return ChainEntry(upstream=ANTHROPIC_UPSTREAM, model=model_id, ttft_timeout_s=ttft)

    def vllm_entry(self, agent: AgentPlan, upstream: UpstreamSpec) -> ChainEntry:
        fleet = agent.fleet
        ttft = agent.latency.self_hosted_ttft_s
        if fleet is None or ttft is None:
            missing = "fleet" if fleet is None else "latency.self_hosted_ttft_s"
            raise InvalidInput(f"plan agent {agent.name!r} has route gpu but no {missing}",
                               hint="plan it again with this version of agentdeploy (`deploy plan FILE --write`)")
        name = vllm_upstream_name(agent.name)
        self.upstreams[name] = upstream
        self.models.setdefault(fleet.served_model_name, ModelSpec(context_tokens=fleet.max_model_len))
        return ChainEntry(upstream=name, model=fleet.served_model_name, ttft_timeout_s=ttft)


def _budget(agent: AgentPlan, builder: _ConfigBuilder) -> BudgetSpec | None:
    """The plan's gateway share of the budget and the policy the gateway enforces, as planned."""
    plan = agent.budget
    if plan.monthly_usd <= 0:
        return None
    degrade = [builder.claude_entry(agent.degrade_model)] if agent.degrade_model else []
    return BudgetSpec(monthly_usd=plan.gateway_usd, thresholds_pct=list(plan.thresholds_pct),
                      policy=plan.gateway_policy, degrade_chain=degrade)


def _cache(agent: AgentPlan) -> CacheSpec:
    return CacheSpec(
        enabled=agent.cache.enabled and bool(agent.cache.breakpoints),
        ttl=agent.cache.ttl,
        breakpoints=[b for b in agent.cache.breakpoints if b in BREAKPOINTS],
    )


def build_gateway_config(
    plan: Plan,
    catalog: Catalog,
    *,
    anthropic_base_url: str = ANTHROPIC_URL,
    anthropic_key: SecretRef | None = None,
    vllm_replicas: Mapping[str, Sequence[str]] | None = None,
    fleets: Mapping[str, FleetRefs] | None = None,
    replicas_dir: str | None = None,
    node_health_port: int | None = None,
    vllm_keys: Mapping[str, SecretRef] | None = None,
    client_key_hashes: Mapping[str, Sequence[str]] | None = None,
    shared_key_hashes: Sequence[str] = (),
    cloudwatch_interval_s: float = 0.0,
    budget_store: BudgetStoreSpec | None = None,
    listen: ListenSpec | None = None,
) -> GatewayConfig:
    """Map the plan onto the gateway config (pure: no environment, no I/O).

    Per GPU agent: `vllm_replicas` its static URLs, `fleets` its provisioned group (the gateway
    then discovers the nodes and wakes the group), `vllm_keys` where its vLLM key is (default
    env VLLM_API_KEY). `client_key_hashes` per agent and `shared_key_hashes` are sha256 hashes.
    `cloudwatch_interval_s` > 0 makes the gateway publish spend, unmet demand and fleet-served
    counts (provisioned stacks).
    """
    builder = _ConfigBuilder(catalog, anthropic_base_url, anthropic_key)
    agents: dict[str, AgentSpec] = {}
    hashes = client_key_hashes or {}
    for agent in plan.agents:
        if agent.route == "gpu":
            refs = (fleets or {}).get(agent.name)
            upstream = UpstreamSpec(
                kind="openai",
                replicas=list((vllm_replicas or {}).get(agent.name, [])),
                replicas_file=f"{replicas_dir}/{agent.name}.replicas" if replicas_dir else None,
                api_key=(vllm_keys or {}).get(agent.name) or SecretRef(env=VLLM_KEY_ENV),
                connect_timeout_s=1.0,
                stall_timeout_s=5.0,
                max_load_per_replica=agent.fleet.max_concurrency_per_replica if agent.fleet else None,
                node_health_port=node_health_port or (NODE_HEALTH_PORT if refs else None),
                breaker=BreakerSpec(open_s=agent.fleet.probe_interval_s,
                                    max_open_s=agent.fleet.breaker_max_open_s) if agent.fleet else None,
                continuation=True,  # vLLM continues a final assistant message (mid-stream failover)
                discovery=fleet_discovery(plan.region, refs) if refs else None,
                wake=fleet_wake(plan.region, refs, agent) if refs else None,
            )
            chain = [builder.vllm_entry(agent, upstream)]
            if agent.fallback_model:
                chain.append(builder.claude_entry(agent.fallback_model))
        else:
            chain = [builder.claude_entry(agent.model)]
        agents[agent.name] = AgentSpec(
            key_hashes=list(hashes.get(agent.name, [])),
            chain=chain,
            max_tokens_default=agent.max_tokens,
            max_tokens_cap=agent.max_tokens,
            cache=_cache(agent),
            budget=_budget(agent, builder),
            deadline_s=agent.latency.ceiling_s,
            batch=BatchSpec(discount=catalog.claude(agent.model).batch_discount) if agent.batch else None,
        )
    return GatewayConfig(
        stack=plan.stack,
        listen=listen or ListenSpec(),
        upstreams=builder.upstreams,
        models=builder.models,
        agents=agents,
        shared_key_hashes=list(shared_key_hashes),
        budget_store=budget_store or BudgetStoreSpec(),
        cloudwatch_interval_s=cloudwatch_interval_s,
    )
