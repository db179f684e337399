"""The gateway config turned into objects the request path uses without further lookups.

Built once per load or reload; a reload builds a new Runtime and swaps it in, while
requests in flight keep the one they started with. Upstream targets are carried over by
URL, so circuit breakers and load figures survive a reload.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.serving.auth import KeyIndex
from agentdeploy.serving.config import AgentSpec, ChainEntry, GatewayConfig
from agentdeploy.serving.upstreams import Upstream
from agentdeploy.tokens import TOKEN_KINDS, TokenPrices


@dataclass(slots=True)
class Step:
    upstream: Upstream
    model: str
    prices: TokenPrices
    ttft_timeout: float
    context_tokens: int | None
    min_cacheable: int


@dataclass(slots=True)
class Agent:
    name: str
    spec: AgentSpec
    chain: list[Step]
    degrade_chain: list[Step]
    worst: TokenPrices
    degrade_worst: TokenPrices
    budget_limit_micro: int | None


def _worst(steps: list[Step]) -> TokenPrices:
    """Per kind, the highest price any step may bill (reservation covers every fallback)."""
    if not steps:
        return TokenPrices()
    return TokenPrices(**{kind: max(s.prices.of(kind) for s in steps) for kind in TOKEN_KINDS})


class Runtime:
    def __init__(self, config: GatewayConfig, secrets: dict[str, str | None], previous: Runtime | None = None) -> None:
        self.config = config
        self.keys = KeyIndex(config)
        self.upstreams: dict[str, Upstream] = {}
        for name, up_spec in config.upstreams.items():
            up = Upstream(name, up_spec, config.breaker, secrets.get(name))
            if previous and name in previous.upstreams:
                up.adopt(previous.upstreams[name])
            self.upstreams[name] = up
        self.agents: dict[str, Agent] = {}
        for name, spec in config.agents.items():
            chain = [self._step(e, config) for e in spec.chain]
            degrade = [self._step(e, config) for e in spec.budget.degrade_chain] if spec.budget else []
            limit = int(spec.budget.monthly_usd * 1_000_000) if spec.budget and spec.budget.policy != "alert" else None
            self.agents[name] = Agent(name, spec, chain, degrade, _worst(chain), _worst(degrade), limit)

    def _step(self, entry: ChainEntry, config: GatewayConfig) -> Step:
        model = config.models.get(entry.model)
        # A config ModelSpec is TokenPrices plus limits; the request path keeps just the prices.
        prices = model.prices_only() if model else TokenPrices()
        return Step(
            upstream=self.upstreams[entry.upstream],
            model=entry.model,
            prices=prices,
            ttft_timeout=entry.ttft_timeout_s or config.first_byte_timeout_s,
            context_tokens=model.context_tokens if model else None,
            min_cacheable=model.min_cacheable_tokens if model else 0,
        )
