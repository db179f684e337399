"""What one answer cost, from the usage the upstream reported.

Cache writes are priced by TTL (5 min 1.25x, 1 h 2x input by default) and cache reads at
0.1x; the multipliers come from the catalog through the rendered config, so a price change
is a config change. Self-hosted (vLLM) tokens cost nothing at the gateway: the GPU fleet is
paid by the hour and accounted elsewhere. Prices are `agentdeploy.tokens.TokenPrices`, the one
declaration of the five token kinds (a config `ModelSpec` is one, with limits added).
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.tokens import TokenKind, TokenPrices


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
    #: True once the upstream's closing usage arrived (Anthropic's message_delta, OpenAI's usage
    #: chunk); before that the output count is only what was generated so far, or a placeholder.
    final: bool = False

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write + self.cache_read

    def as_dict(self) -> dict[TokenKind, int]:
        return {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "cache_read": self.cache_read,
        }


def cost_usd(usage: Usage, prices: TokenPrices) -> float:
    return (
        usage.input_tokens * prices.input
        + usage.output_tokens * prices.output
        + usage.cache_write_5m * prices.cache_write_5m
        + usage.cache_write_1h * prices.cache_write_1h
        + usage.cache_read * prices.cache_read
    )


def worst_case_usd(prompt_tokens: int, max_tokens: int, prices: TokenPrices) -> float:
    """The most one request can cost: every prompt token written to the 1 h cache, every output token used."""
    return prompt_tokens * prices.worst_input + max_tokens * prices.output
