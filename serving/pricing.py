"""What one answer cost, from the usage the upstream reported.

Cache writes are priced by TTL (5 min 1.25x, 1 h 2x input by default) and cache reads at
0.1x; the multipliers come from the catalog through the rendered config, so a price change
is a config change. Self-hosted (vLLM) tokens cost nothing at the gateway: the GPU fleet is
paid by the hour and accounted elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Usage:
    """Token usage in Anthropic's split: `input_tokens` excludes cache writes and reads."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    #: True once an upstream reported usage (as opposed to an estimate).
    reported: bool = False

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write + self.cache_read

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "cache_read": self.cache_read,
        }


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per token for each kind of token one model bills."""

    input: float = 0.0
    output: float = 0.0
    cache_write_5m: float = 0.0
    cache_write_1h: float = 0.0
    cache_read: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def worst_input(self) -> float:
        """The highest price a prompt token can be billed at (a 1 h cache write, usually)."""
        return max(self.input, self.cache_write_5m, self.cache_write_1h)

    @property
    def free(self) -> bool:
        return not (self.input or self.output or self.cache_write_5m or self.cache_write_1h or self.cache_read)


def cost_usd(usage: Usage, prices: Prices) -> float:
    return (
        usage.input_tokens * prices.input
        + usage.output_tokens * prices.output
        + usage.cache_write_5m * prices.cache_write_5m
        + usage.cache_write_1h * prices.cache_write_1h
        + usage.cache_read * prices.cache_read
    )


def worst_case_usd(prompt_tokens: int, max_tokens: int, prices: Prices) -> float:
    """The most one request can cost: every prompt token written to the 1 h cache, every output token used."""
    return prompt_tokens * prices.worst_input + max_tokens * prices.output
