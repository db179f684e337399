"""The five kinds of token a model bills, declared once.

Anthropic bills a prompt token at one of four rates (plain input, a cache write with a 5-minute
or a 1-hour lifetime, a cache read) and an output token at a fifth. The catalog prices them, the
plan and the rendered gateway config carry them, and the gateway's meter multiplies usage by
them: every stage uses this one declaration, so a sixth kind is added in one place.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

TokenKind = Literal["input", "output", "cache_write_5m", "cache_write_1h", "cache_read"]
TOKEN_KINDS: tuple[TokenKind, ...] = get_args(TokenKind)


class TokenPrices(BaseModel):
    """USD per token for each kind of token one model bills (all zero: self-hosted, free)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)
    cache_write_5m: float = Field(default=0.0, ge=0)
    cache_write_1h: float = Field(default=0.0, ge=0)
    cache_read: float = Field(default=0.0, ge=0)

    def of(self, kind: TokenKind) -> float:
        return float(getattr(self, kind))

    @property
    def worst_input(self) -> float:
        """The highest price a prompt token can be billed at (a 1 h cache write, usually)."""
        return max(self.input, self.cache_write_5m, self.cache_write_1h)

    @property
    def free(self) -> bool:
        return not any(self.of(kind) for kind in TOKEN_KINDS)

    def prices_only(self) -> TokenPrices:
        """Just the five prices, from a subclass that carries more (a model's limits)."""
        return TokenPrices(**{kind: self.of(kind) for kind in TOKEN_KINDS})
