"""Prompt caching: which breakpoints and TTL pay, from the traffic's own timing.

A cached prefix is read at 0.1x input but written at 1.25x (5 min) or 2x (1 h). It pays only
when the next request sharing the prefix arrives within the TTL: later turns of a conversation
usually do (their gap is known), separate conversations do with a probability set by the
arrival rate (every request refreshes the entry). A read is only ever of a prefix an earlier
request wrote within the TTL. The planner prices every option with the token bill below and
keeps the cheapest, so enabling caching can never raise the projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentdeploy.planner.catalog import ClaudeModel
from agentdeploy.planner.plan import CacheTTL
from agentdeploy.planner.spec import Profile
from agentdeploy.planner.traffic import Traffic

TTL_SECONDS: dict[CacheTTL, float] = {"5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True)
class CacheOption:
    ttl: CacheTTL | None  # None = caching off
    conversation: bool = False  # also a breakpoint at the end of the conversation so far

    @property
    def enabled(self) -> bool:
        return self.ttl is not None

    @property
    def breakpoints(self) -> list[str]:
        if self.ttl is None:
            return []
        return ["system", "conversation"] if self.conversation else ["system"]


OPTIONS = [
    CacheOption(None),
    CacheOption("5m"),
    CacheOption("1h"),
    CacheOption("5m", conversation=True),
    CacheOption("1h", conversation=True),
]


@dataclass(frozen=True)
class TokenBill:
    """Tokens of one conversation by how they are billed."""

    uncached_input: float = 0.0
    cache_write: float = 0.0
    cache_read: float = 0.0
    output: float = 0.0
    #: Share of requests whose static prefix came from cache.
    static_hit_rate: float = 0.0


def first_hit_probability(ttl_s: float, rps: float) -> float:
    """P(another request refreshed the prefix within the TTL), Poisson arrivals."""
    return 1.0 - math.exp(-rps * ttl_s)


def conversation_bill(
    profile: Profile,
    model: ClaudeModel,
    option: CacheOption,
    traffic: Traffic,
    *,
    turn_gap_s: float,
    batch_hit_rate: float | None = None,
) -> TokenBill:
    """Bill one conversation's tokens under a caching option.

    `batch_hit_rate` replaces the arrival-based estimate for the Batch API, where requests of a
    batch run close together but parallel requests before the first response all write.
    """
    # S: static prefix; In, Out: new input and output per turn; T: turns
    S, In, Out, T = profile.static_prefix_tokens, profile.input_tokens_per_turn, profile.output_tokens_per_turn, profile.turns
    minimum = model.min_cacheable_tokens
    static_cacheable = option.enabled and S >= minimum and S > 0
    ttl_s = TTL_SECONDS[option.ttl] if option.ttl else 0.0
    if batch_hit_rate is not None:
        h_first = batch_hit_rate
        gap_ok = False
    else:
        h_first = first_hit_probability(ttl_s, traffic.avg_rps) if static_cacheable else 0.0
        gap_ok = turn_gap_s <= ttl_s
    uncached = write = read = 0.0
    hits = 0.0
    # A read needs an entry: only a turn whose own breakpoint was cacheable (at or over the
    # model's minimum) wrote its prefix; turns under the minimum write nothing to read back.
    prev_written = False
    for k in range(1, T + 1):
        history = (k - 1) * (In + Out) if profile.resend_history else 0
        lead = 0  # static tokens not covered by their own breakpoint travel with the conversation part
        if static_cacheable:
            p_hit = 1.0 if (k > 1 and gap_ok) else h_first
            read += p_hit * S
            write += (1 - p_hit) * S
            hits += p_hit
        else:
            lead = S
        dynamic = lead + history + In
        conv_cacheable = (
            option.conversation and batch_hit_rate is None and T > 1 and (S + history + In) >= minimum
        )
        if conv_cacheable and prev_written and gap_ok and profile.resend_history:
            # the previous turn's breakpoint covered everything up to its own input
            read += dynamic - Out - In
            write += Out + In
        elif conv_cacheable:
            write += dynamic
        else:
            uncached += dynamic
        prev_written = conv_cacheable
    return TokenBill(
        uncached_input=uncached,
        cache_write=write,
        cache_read=read,
        output=float(Out * T),
        static_hit_rate=hits / T if static_cacheable else 0.0,
    )
