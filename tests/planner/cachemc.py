"""A Monte-Carlo replay of prompt-cache billing over simulated days, independent of planner/caching.py.

Conversations arrive at random (Poisson) over each active day; the turns of one conversation
follow lognormal gaps; requests are replayed in time order against a cache of entries. The static
prefix entry is shared (any request using it refreshes it); a conversation's own breakpoint is
read only by its next turn. An entry lives for the TTL after its last use; a day that is not
round-the-clock starts cold. Each request reads the longest live entry that prefixes it, writes
from there to its last breakpoint, and pays full price for the rest.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from agentdeploy.planner.caching import TTL_SECONDS, CacheOption
from agentdeploy.planner.spec import Profile


@dataclass(frozen=True)
class Billed:
    """Mean tokens per conversation by how they are billed."""

    uncached: float
    write: float
    read: float


def _gaps(rng: random.Random, n: int, mean: float, cv: float) -> list[float]:
    if cv <= 0:
        return [mean] * n
    s2 = math.log1p(cv * cv)
    mu = math.log(mean) - s2 / 2
    return [rng.lognormvariate(mu, math.sqrt(s2)) for _ in range(n)]


def simulate(
    profile: Profile, minimum: int, option: CacheOption, *, per_day: float, hours: float,
    gap_mean: float, gap_cv: float, conversations: int, seed: int = 7,
) -> Billed:
    rng = random.Random(seed)
    S, In, Out, T = profile.static_prefix_tokens, profile.input_tokens_per_turn, profile.output_tokens_per_turn, profile.turns
    ttl = TTL_SECONDS[option.ttl] if option.ttl else 0.0
    day = hours * 3600.0
    rate = per_day / day
    static_bp = option.enabled and S > 0 and S >= minimum
    totals = [0.0, 0.0, 0.0]
    done = 0
    while done < conversations:
        # one active day (or, round the clock, one long stretch of days)
        span = day if hours < 24 else day * max(1.0, conversations / per_day)
        requests: list[tuple[float, int, int]] = []
        t = rng.expovariate(rate)
        conv = 0
        while t < span:
            times = [t]
            for g in _gaps(rng, T - 1, gap_mean, gap_cv):
                times.append(times[-1] + g)
            requests += [(when, conv, k) for k, when in enumerate(times, start=1)]
            conv += 1
            t += rng.expovariate(rate)
        requests.sort()
        static_last: float | None = None
        own: dict[int, tuple[float, int]] = {}  # conversation -> (time, prefix length) of its last breakpoint
        for when, c, k in requests:
            history = (k - 1) * (In + Out) if profile.resend_history else 0
            length = S + history + In
            conv_bp = option.enabled and option.conversation and T > 1 and length >= minimum
            breakpoints = ([S] if static_bp else []) + ([length] if conv_bp else [])
            live = []
            if static_bp and static_last is not None and when - static_last <= ttl:
                live.append(S)
            if c in own and profile.resend_history and when - own[c][0] <= ttl:
                live.append(own[c][1])
            last = max(breakpoints, default=0)
            hit = max(live, default=0) if breakpoints else 0
            totals[0] += length - max(hit, last)
            totals[1] += max(0, last - hit)
            totals[2] += hit
            if static_bp:
                static_last = when
            if conv_bp:
                own[c] = (when, length)
            else:
                own.pop(c, None)
        done += conv
    return Billed(totals[0] / done, totals[1] / done, totals[2] / done)
