"""The gateway's rendered config: the only thing `deploy serve` reads.

This module is the runtime schema and its loader, nothing more: `deploy render` (and the
Pulumi program) build a `GatewayConfig` from the plan (render stage: templates/gateway_config.py)
and write it with `dump_yaml`; `deploy serve` reads it with `load_config`. Secrets appear only
by reference (an env var name or a file path); client keys only as SHA-256 hashes
(`agentdeploy.serving.auth.hash_key`).

- vLLM replicas: a static list in `replicas` and/or a `replicas_file` (one URL a line) the
  gateway re-reads when it changes, and/or a provisioned fleet's `discovery` (its nodes read
  from AWS), so autoscaling never needs a restart; a config reload (SIGHUP) re-reads
  everything else. `wake` lets the gateway raise a fleet at zero itself.
- The last entry of a chain gets the generous `first_byte_timeout_s` (a late answer beats none).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentdeploy.errors import InvalidInput, MissingDependency
from agentdeploy.naming import VLLM_PORT
from agentdeploy.tokens import TokenPrices

#: The Anthropic upstream's default base URL.
ANTHROPIC_URL = "https://api.anthropic.com"
#: Where a cache_control breakpoint may go, in prefix order.
Breakpoint = Literal["tools", "system", "conversation"]
BREAKPOINTS: tuple[Breakpoint, ...] = get_args(Breakpoint)


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(_M):
    """Where a secret value lives; the value itself is never written to config."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if not self.env and not self.file:
            raise ValueError("a secret reference needs `env` (variable name) or `file` (path)")
        return self

    def resolve(self, environ: dict[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        if self.env and env.get(self.env):
            return env[self.env].strip()
        if self.file:
            try:
                return Path(self.file).read_text().strip() or None
            except OSError:
                return None
        return None

    def describe(self) -> str:
        return " or ".join(x for x in (self.env and f"env {self.env}", self.file and f"file {self.file}") if x)


class BreakerSpec(_M):
    """Circuit breakers (serving/breaker.py). `open_s` is also the probe interval (at most one
    trial request per `open_s` reaches a dead target); `max_open_s` bounds how long a recovered
    target can wait for traffic without a health signal, so it stays under the 10 s recovery
    promise."""

    failure_threshold: int = Field(default=3, gt=0)
    open_s: float = Field(default=2.0, gt=0)
    max_open_s: float = Field(default=8.0, gt=0)
    #: Also open when at least this share of the last `window` outcomes failed (flapping).
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    window: int = Field(default=10, ge=2)


class DiscoverySpec(_M):
    """Where the gateway finds a GPU fleet's nodes (serving/discovery.py): the target group's
    health (healthy instance targets; draining ones get no new requests) and/or the Auto
    Scaling group's InService instances, by private IP, re-read every `refresh_s`."""

    region: str = Field(min_length=1)
    target_group_arn: str | None = None
    asg_name: str | None = None
    #: Seconds between reads. The target group re-checks a node every 15 s, so faster buys
    #: little; each read is one DescribeTargetHealth (plus DescribeInstances for a new node).
    refresh_s: float = Field(default=5.0, ge=1.0)
    #: The port vLLM listens on at each node (`http://<private ip>:<port>`).
    port: int = Field(default=VLLM_PORT, gt=0, lt=65536)

    @model_validator(mode="after")
    def _source(self) -> DiscoverySpec:
        if not self.target_group_arn and not self.asg_name:
            raise ValueError("discovery needs `target_group_arn` (its health) or `asg_name` (its InService instances)")
        return self


class WakeSpec(_M):
    """Raise a fleet at zero when requests arrive for it (serving/wake.py): SetDesiredCapacity
    on `asg_name` to `capacity`, at most once per `min_interval_s`, off the request path."""

    asg_name: str = Field(min_length=1)
    capacity: int = Field(default=1, ge=1)
    min_interval_s: float = Field(default=30.0, gt=0)
    #: The group's region; None = the environment's (AWS_REGION).
    region: str | None = None


class UpstreamSpec(_M):
    kind: Literal["openai", "anthropic"]
    #: Anthropic: the API base URL. OpenAI-compatible: optional single URL (same as replicas=[url]).
    base_url: str | None = None
    #: OpenAI-compatible replicas (vLLM), load-balanced by in-flight + queue depth.
    replicas: list[str] = Field(default_factory=list)
    #: File with one replica URL a line (blank lines and # comments ignored), re-read on change.
    replicas_file: str | None = None
    api_key: SecretRef | None = None
    anthropic_version: str = "2023-06-01"
    connect_timeout_s: float = Field(default=2.0, gt=0)
    #: Longest silence between stream chunks before the stream counts as stalled.
    stall_timeout_s: float = Field(default=15.0, gt=0)
    #: How often replicas' /metrics are read (queue depth, health); 0 turns polling off.
    metrics_poll_s: float = Field(default=1.0, ge=0)
    #: Requests (running + waiting) one replica takes before the latency budget is at risk.
    max_load_per_replica: int | None = Field(default=None, gt=0)
    #: Port of the node agent's /healthz on each replica's host (8081 on agentdeploy GPU nodes).
    #: When set, a replica whose node says 503 (spot notice: draining) gets no new requests,
    #: even while its vLLM still answers the requests it already has.
    node_health_port: int | None = Field(default=None, gt=0, lt=65536)
    #: This upstream's breakers (the plan's per-agent recovery settings); None = the global `breaker`.
    breaker: BreakerSpec | None = None
    #: The replicas continue a final assistant message (vLLM: `continue_final_message`), so a
    #: stream broken after its first token is finished on another replica. Never for Claude
    #: (current models reject assistant prefill) nor a server that may not know the flag.
    continuation: bool = False
    #: Find the fleet's nodes from AWS and route to each directly (a GPU fleet of the stack).
    discovery: DiscoverySpec | None = None
    #: Raise the fleet's group from zero when a request finds no healthy node.
    wake: WakeSpec | None = None

    @model_validator(mode="after")
    def _urls(self) -> UpstreamSpec:
        if self.kind == "anthropic" and (self.discovery or self.wake):
            raise ValueError("discovery and wake are for a self-hosted (openai) fleet, not Claude")
        if self.kind == "anthropic" and self.continuation:
            raise ValueError("continuation: Claude models reject assistant prefill; only a vLLM upstream can continue an answer")
        if self.kind == "anthropic" and not self.base_url:
            self.base_url = ANTHROPIC_URL
        return self


class ModelSpec(TokenPrices):
    """Prices in USD per token (the five token kinds), and the limits the gateway checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context_tokens: int | None = None
    min_cacheable_tokens: int = 0


class ChainEntry(_M):
    upstream: str
    model: str
    #: Time allowed for the first token of this entry before moving on; None = first_byte_timeout_s.
    ttft_timeout_s: float | None = Field(default=None, gt=0)


class CacheSpec(_M):
    enabled: bool = False
    ttl: Literal["5m", "1h"] | None = None
    breakpoints: list[Breakpoint] = Field(default_factory=list)


class BudgetSpec(_M):
    monthly_usd: float = Field(gt=0)
    thresholds_pct: list[int] = Field(default_factory=lambda: [50, 80, 100])
    policy: Literal["block", "degrade", "alert"] = "alert"
    #: The cheaper chain used by `degrade` once the budget no longer covers the normal one.
    degrade_chain: list[ChainEntry] = Field(default_factory=list)


class BatchSpec(_M):
    """A batch-route agent: it runs on the Message Batches API, at batch prices (serving/batch/)."""

    #: The share the Batch API takes off every token price (the catalog's batch_discount).
    discount: float = Field(default=0.5, ge=0, le=1)
    #: Realtime requests (/v1/messages, /v1/chat/completions) for this agent: refused, naming the batch endpoints.
    realtime: Literal["reject"] = "reject"
    #: How often the gateway checks a submitted batch, to settle its budget when it ends even if no client asks.
    follow_s: float = Field(default=60.0, gt=0)


class AgentSpec(_M):
    key_hashes: list[str] = Field(default_factory=list)
    chain: list[ChainEntry] = Field(min_length=1)
    max_tokens_default: int = Field(gt=0)
    max_tokens_cap: int = Field(gt=0)
    over_cap: Literal["clamp", "reject"] = "clamp"
    cache: CacheSpec = Field(default_factory=CacheSpec)
    budget: BudgetSpec | None = None
    #: Latency budget for retries and fallbacks (the plan's ceiling); None = no ceiling.
    deadline_s: float | None = Field(default=None, gt=0)
    #: Cap on time spent waiting to retry (Retry-After, backoff) over one request.
    retry_max_total_s: float = Field(default=10.0, ge=0)
    max_retries_per_upstream: int = Field(default=2, ge=0)
    #: Set for a batch-route agent (the plan's `batch`): its requests go through the Message Batches API.
    batch: BatchSpec | None = None


class BudgetStoreSpec(_M):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretRef | None = None
    key_prefix: str = "agentdeploy:budget"


class ListenSpec(_M):
    #: Loopback unless told otherwise: the container image and the stack pass --host 0.0.0.0.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, lt=65536)


class HttpLimitsSpec(_M):
    """What one client may cost the HTTP front before its key is even checked (http1.Limits)."""

    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    max_url: int = Field(default=8192, ge=256)
    max_headers: int = Field(default=100, ge=8)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_connections: int = Field(default=4096, ge=1)
    max_buffered_body_bytes: int = Field(default=256 * 1024 * 1024, ge=32 * 1024 * 1024)
    send_timeout_s: float = Field(default=60.0, gt=0)
    keepalive_s: float = Field(default=75.0, gt=0)


class OperatorSpec(_M):
    """Who may read /metrics (per-agent spend, budgets, upstream URLs): holders of an operator
    key on the client port, and anyone who can reach `listen`, a separate listener that is
    loopback unless told otherwise. Without either, /metrics is not served to anyone."""

    key_hashes: list[str] = Field(default_factory=list)
    listen: ListenSpec | None = None


class GatewayConfig(_M):
    version: Literal[1] = 1
    stack: str = "default"
    listen: ListenSpec = Field(default_factory=ListenSpec)
    upstreams: dict[str, UpstreamSpec]
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    agents: dict[str, AgentSpec]
    #: Keys allowed to call any agent by naming it in `model` (hashes only).
    shared_key_hashes: list[str] = Field(default_factory=list)
    budget_store: BudgetStoreSpec = Field(default_factory=BudgetStoreSpec)
    operator: OperatorSpec = Field(default_factory=OperatorSpec)
    http: HttpLimitsSpec = Field(default_factory=HttpLimitsSpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    first_byte_timeout_s: float = Field(default=60.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    log_requests: bool = True
    #: Publish per-agent SpendUSD, and UnmetDemand and FleetServed per GPU agent, to CloudWatch every this many seconds
    #: (0 = off; the provisioned stack turns it on, the task role may PutMetricData).
    cloudwatch_interval_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _refs(self) -> GatewayConfig:
        problems = []
        for name, agent in self.agents.items():
            entries = list(agent.chain) + (list(agent.budget.degrade_chain) if agent.budget else [])
            for entry in entries:
                if entry.upstream not in self.upstreams:
                    problems.append(f"agents.{name}: upstream {entry.upstream!r} is not defined under upstreams")
            for h in agent.key_hashes:
                if not h.startswith("sha256:") or len(h) != 71:
                    problems.append(f"agents.{name}.key_hashes: {h[:12]!r}... is not a sha256:<64 hex> hash")
            if agent.budget and agent.budget.policy == "degrade" and not agent.budget.degrade_chain:
                problems.append(f"agents.{name}.budget: policy degrade needs a degrade_chain")
        for h in self.operator.key_hashes:
            if not h.startswith("sha256:") or len(h) != 71:
                problems.append(f"operator.key_hashes: {h[:12]!r}... is not a sha256:<64 hex> hash")
        if self.operator.listen is not None and self.operator.listen.port == self.listen.port:
            problems.append(f"operator.listen.port: {self.operator.listen.port} is the client port; give the operator listener its own")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def memory_budget_warning(config: GatewayConfig) -> str | None:
    """What `deploy serve` says at start when budgets meant to hold live only in this process."""
    holding = sorted(n for n, a in config.agents.items() if a.budget and a.budget.policy in ("block", "degrade"))
    if config.budget_store.backend != "memory" or not holding:
        return None
    return (f"budget store is in memory: the block/degrade budgets of {', '.join(holding)} start from zero on every "
            "restart and each gateway replica counts its own; set budget_store: {backend: redis, redis_url: {env: REDIS_URL}} "
            "to make them hold")


# --------------------------------------------------------------------------- files


def dump_yaml(config: GatewayConfig) -> str:
    header = "# agentdeploy gateway config (rendered from the plan; secrets by reference only)\n"
    return header + yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False)


def parse_config(data: object, origin: str = "config") -> GatewayConfig:
    if not isinstance(data, dict):
        raise InvalidInput(f"{origin}: the gateway config must be a mapping")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as err:
        details = [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()]
        raise InvalidInput(f"{origin}: gateway config is invalid", details=details, hint="re-render it with `deploy render`, or fix the fields named above") from None


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise InvalidInput(f"{p}: cannot read gateway config ({err.strerror})", hint="pass the file `deploy render` wrote, with --config") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise InvalidInput(f"{where}: gateway config is not valid YAML ({getattr(err, 'problem', err)})") from None
    return parse_config(data, str(p))


def check_secrets(config: GatewayConfig, environ: dict[str, str] | None = None) -> None:
    """Fail early, naming the variable or file, when a referenced upstream key is missing."""
    missing = []
    for name, up in config.upstreams.items():
        if up.kind == "anthropic" and up.api_key and up.api_key.resolve(environ) is None:
            missing.append(f"upstream {name}: set {up.api_key.describe()}")
    if config.budget_store.backend == "redis":
        ref = config.budget_store.redis_url
        if ref is None or ref.resolve(environ) is None:
            missing.append(f"budget_store: set {ref.describe() if ref else 'redis_url'} (the Redis URL)")
    if missing:
        raise MissingDependency("the gateway config references secrets that are not set", details=missing)
