"""A request-by-request reference for prompt-cache billing, independent of planner/caching.py.

It replays one conversation against a cache of prefix entries: a request reads the longest live
entry that is a prefix of it, writes from there to its last cacheable breakpoint, and pays full
price for the rest. Entries exist only where an earlier request had a breakpoint at or over the
model's minimum, and live for the TTL after their last use (turn gaps exact here; their spread and
the arrivals of other conversations are the Monte-Carlo replay's job, tests/planner/cachemc.py).
The static prefix may also have been written by another conversation, with probability `h`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.planner.caching import TTL_SECONDS, CacheOption
from agentdeploy.planner.catalog import Catalog, ClaudeModel
from agentdeploy.planner.options import hits_at
from agentdeploy.planner.spec import AgentDecision, Profile


@dataclass(frozen=True)
class Billed:
    uncached: float
    write: float
    read: float


def simulate(profile: Profile, minimum: int, option: CacheOption, *, h: float, turn_gap_s: float, batch: bool) -> Billed:
    S, In, Out, T = profile.static_prefix_tokens, profile.input_tokens_per_turn, profile.output_tokens_per_turn, profile.turns
    ttl = TTL_SECONDS[option.ttl] if option.ttl else 0.0
    conversation_bp = option.conversation and not batch and T > 1
    own: dict[int, float] = {}  # prefix length -> time of its last write or read
    uncached = write = read = 0.0
    for k in range(1, T + 1):
        t = (k - 1) * turn_gap_s
        length = S + ((k - 1) * (In + Out) if profile.resend_history else 0) + In
        breakpoints = []
        if option.enabled and 0 < S and S >= minimum:
            breakpoints.append(S)
        if option.enabled and conversation_bp and length >= minimum:
            breakpoints.append(length)
        # batch requests of one conversation are not timed together: none finds another's entry
        live = [] if batch else [p for p, when in own.items() if t - when <= ttl and (p == S or profile.resend_history)]
        cases = [(1.0, live)]
        if S in breakpoints and S not in live:
            cases = [(h, live + [S]), (1 - h, live)]  # another conversation may have written S
        last = max(breakpoints, default=0)
        for weight, entries in cases:
            hit = max(entries, default=0) if breakpoints else 0
            read += weight * hit
            write += weight * max(0, last - hit)
            uncached += weight * (length - max(hit, last))
        for p in breakpoints:
            own[p] = t
    return Billed(uncached, write, read)


def true_cost(agent: AgentDecision, model: ClaudeModel, option: CacheOption, catalog: Catalog, conversations: float, *, batch: bool) -> float:
    """Monthly USD for `conversations` conversations billed the way the simulation says."""
    h = hits_at(agent, option, catalog, conversations, batch=batch).first
    gap = agent.profile.turn_gap_s or catalog.assumptions.default_turn_gap_s
    billed = simulate(agent.profile, model.min_cacheable_tokens, option, h=h, turn_gap_s=gap, batch=batch)
    write_kind = "cache_write_1h" if option.ttl == "1h" else "cache_write_5m"
    tokens = (
        billed.uncached * model.usd_per_token("input")
        + billed.write * model.usd_per_token(write_kind)
        + billed.read * model.usd_per_token("cache_read")
        + agent.profile.turns * agent.profile.output_tokens_per_turn * model.usd_per_token("output")
    )
    return tokens * conversations * (1 - model.batch_discount if batch else 1.0)
