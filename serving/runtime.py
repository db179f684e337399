"""The gateway config turned into objects the request path uses without further lookups.

Built once per load or reload; a reload builds a new Runtime and swaps it in, while
requests in flight keep the one they started with. Upstream targets are carried over by
URL, so circuit breakers and load figures survive a reload.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.serving.auth import KeyIndex
from agentdeploy.serving.config import AgentSpec, ChainEntry, GatewayConfig
from agentdeploy.serving.pricing import Prices
from agentdeploy.serving.upstreams import Upstream


@dataclass(slots=True)
class Step:
    upstream: Upstream
    model: str
    prices: Prices
    ttft_timeout: float
    context_tokens: int | None
    min_cacheable: int


@dataclass(slots=True)
class Agent:
    name: str
    spec: AgentSpec
    chain: list[Step]
    degrade_chain: list[Step]
    worst: Prices
    degrade_worst: Prices
    budget_limit_micro: int | None


def _worst(steps: list[Step]) -> Prices:
    """Per kind, the highest price any step may bill (reservation covers every fallback)."""
    if not steps:
        return Prices()
    return Prices(
        input=max(s.prices.input for s in steps),
        output=max(s.prices.output for s in steps),
        cache_write_5m=max(s.prices.cache_write_5m for s in steps),
        cache_write_1h=max(s.prices.cache_write_1h for s in steps),
        cache_read=max(s.prices.cache_read for s in steps),
    )


class Runtime:
    def __init__(self, config: GatewayConfig, secrets: dict[str, str | None], previous: "Runtime | None" = None) -> None:
        self.config = config
        self.keys = KeyIndex(config)
        self.upstreams: dict[str, Upstream] = {}
        for name, spec in config.upstreams.items():
            up = Upstream(name, spec, config.breaker, secrets.get(name))
            if previous and name in previous.upstreams:
                old = previous.upstreams[name]
                up.set_urls([t.url for t in up.targets], keep={t.url: t for t in old.targets})
            self.upstreams[name] = up
        self.agents: dict[str, Agent] = {}
        for name, spec in config.agents.items():
            chain = [self._step(e, config) for e in spec.chain]
            degrade = [self._step(e, config) for e in spec.budget.degrade_chain] if spec.budget else []
            limit = int(spec.budget.monthly_usd * 1_000_000) if spec.budget and spec.budget.policy != "alert" else None
            self.agents[name] = Agent(name, spec, chain, degrade, _worst(chain), _worst(degrade), limit)

    def _step(self, entry: ChainEntry, config: GatewayConfig) -> Step:
        model = config.models.get(entry.model)
        prices = Prices(model.input, model.output, model.cache_write_5m, model.cache_write_1h, model.cache_read) if model else Prices()
        return Step(
            upstream=self.upstreams[entry.upstream],
            model=entry.model,
            prices=prices,
            ttft_timeout=entry.ttft_timeout_s or config.first_byte_timeout_s,
            context_tokens=model.context_tokens if model else None,
            min_cacheable=model.min_cacheable_tokens if model else 0,
        )
