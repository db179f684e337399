"""Prompt caching: which breakpoints and TTL pay, from the traffic's own timing.

A cached prefix is read at 0.1x input but written at 1.25x (5 min) or 2x (1 h). Hits are
counted per conversation, not per request: conversations arrive at random (Poisson) over the
active hours, the turns of one conversation follow a turn gap apart, and every request refreshes
the entries it uses. Each breakpoint has its own lifetime:

- the static prefix (system + tools) is shared: it is live at a request when *any* request used
  it within the TTL. Another conversation's requests cover a window of TTL + the sum over its
  gaps of min(gap, TTL) after it starts; with conversations arriving at rate lambda, a first
  turn finds the entry with probability 1 - exp(-lambda x covered), where at the start of an
  active day only the part of the day elapsed so far counts (each active day starts cold);
- the conversation breakpoint is the conversation's own: a turn reads its predecessor's entry
  only when the gap was within the TTL.

Turn gaps vary: lognormal with the profile's mean and coefficient of variation (a human
answering is right-skewed; `profile.turn_gap_cv`, default in the catalog). The closed form is
held against a Monte-Carlo replay of arrivals in tests/planner/cachemc.py. The planner prices
every option with the token bill below and keeps the cheapest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

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
    #: Share of later turns that read the previous turn's conversation breakpoint.
    conversation_hit_rate: float = 0.0


@dataclass(frozen=True)
class Hits:
    """Chances that a request finds a breakpoint's entry live."""

    #: Static prefix at a conversation's first turn: written by another conversation.
    first: float
    #: The previous turn's entries are still live (the gap was within the TTL).
    own: float

    @property
    def later(self) -> float:
        """Static prefix at a later turn: own previous request or another conversation's."""
        return 1.0 - (1.0 - self.own) * (1.0 - self.first)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@lru_cache(maxsize=4096)  # volume-free: the same few (TTL, gap, cv) for every volume an agent is priced at
def gap_within(ttl_s: float, mean_s: float, cv: float) -> float:
    """P(gap <= TTL) for a lognormal gap of this mean and coefficient of variation (cv 0: exact)."""
    if cv <= 0:
        return 1.0 if mean_s <= ttl_s else 0.0
    s2 = math.log1p(cv * cv)
    mu = math.log(mean_s) - s2 / 2
    return _phi((math.log(ttl_s) - mu) / math.sqrt(s2))


@lru_cache(maxsize=4096)
def mean_min_gap(ttl_s: float, mean_s: float, cv: float) -> float:
    """E[min(gap, TTL)]: how long one gap keeps the entry live, on average."""
    if cv <= 0:
        return min(mean_s, ttl_s)
    s2 = math.log1p(cv * cv)
    s = math.sqrt(s2)
    mu = math.log(mean_s) - s2 / 2
    z = (math.log(ttl_s) - mu) / s
    return mean_s * _phi(z - s) + ttl_s * (1.0 - _phi(z))


def first_turn_hit(rate_per_s: float, covered_s: float, day_s: float) -> float:
    """P(a conversation's first turn finds the static prefix live), averaged over the active day.

    At t seconds into an active day the conversations that can have kept the entry live started
    within min(t, covered) before it, so P(hit at t) = 1 - exp(-rate x min(t, covered));
    averaged over t uniform in the day. A round-the-clock day never starts cold.
    """
    if rate_per_s <= 0 or covered_s <= 0:
        return 0.0
    if day_s >= 86400.0:
        return 1.0 - math.exp(-rate_per_s * covered_s)
    w = min(covered_s, day_s)
    e = math.exp(-rate_per_s * w)
    miss = ((1.0 - e) / rate_per_s + (day_s - w) * e) / day_s
    return 1.0 - miss


def breakpoint_lifetimes(turns: int, ttl_s: float, gap_mean_s: float, gap_cv: float) -> tuple[float, float]:
    """(P(a turn's own previous entry is live), seconds one conversation keeps the static prefix live):
    volume-free, so worked out once per option."""
    own = gap_within(ttl_s, gap_mean_s, gap_cv) if turns > 1 else 0.0
    return own, ttl_s + (turns - 1) * mean_min_gap(ttl_s, gap_mean_s, gap_cv)


def arrival_hits(profile: Profile, traffic: Traffic, ttl_s: float, gap_mean_s: float, gap_cv: float) -> Hits:
    """The per-conversation hit model for realtime requests (see the module docstring)."""
    own, covered = breakpoint_lifetimes(profile.turns, ttl_s, gap_mean_s, gap_cv)
    active_s = traffic.active_seconds_per_month
    rate = traffic.conversations_per_month / active_s if active_s else 0.0
    return Hits(first=first_turn_hit(rate, covered, traffic.active_hours_per_day * 3600.0), own=own)


def batch_hit_rate(conversations_per_day: float, turns: int, parallel_writes: float) -> float:
    """Share of a day's batch requests that find the static prefix written.

    One batch a day holds the day's requests; an entry exists only once a response has begun,
    so the first `parallel_writes` requests the Batch API runs together all write; the rest read.
    Batches a day apart start cold (the 1 h TTL is long gone).
    """
    n = conversations_per_day * turns
    if n <= parallel_writes:
        return 0.0
    return 1.0 - parallel_writes / n


def conversation_bill(profile: Profile, model: ClaudeModel, option: CacheOption, hits: Hits, *, batch: bool = False) -> TokenBill:
    """Bill one conversation's tokens under a caching option and hit chances.

    On the Batch API the conversation breakpoint is never offered and every turn's static hit
    chance is `hits.first` (requests of one conversation are not timed together).
    """
    return bill_plan(profile, model.min_cacheable_tokens, option, hits.own, batch).bill(hits.first)


def bill_plan(profile: Profile, minimum: int, option: CacheOption, own_live: float, batch: bool) -> BillPlan:
    return _plan(profile.static_prefix_tokens, profile.input_tokens_per_turn, profile.output_tokens_per_turn, profile.turns,
                 profile.resend_history, minimum, option.enabled, option.conversation, own_live, batch)


#: One step of a conversation's bill: whether the turn is a later one (its static hit chance
#: includes its own previous request), then what it adds to the cache reads and writes whatever
#: the static hit chance (None: nothing).
_Step = tuple[bool, float | None, float | None]


class BillPlan:
    """One conversation's bill as a function of `first` alone, the chance that a first turn finds
    the static prefix live; the planner prices each option at dozens of volumes and only that
    chance changes between them. What does not depend on it (which breakpoints are cacheable, the
    history each turn re-sends, the conversation breakpoint's reads and writes) is worked out
    once, turn by turn; `bill` then adds up the same terms in the same order per turn.

    Per turn k (S static prefix, In/Out new input and output, T turns):
    - the static prefix, when cacheable (caching on, S at or over the model's minimum): read with
      its hit chance (`first` on a first turn or on the Batch API, else 1 - (1 - own)(1 - first)),
      written otherwise;
    - the rest of the prompt (the static prefix when not cacheable, the re-sent history, the new
      input): read up to the previous turn's conversation breakpoint when the gap was within the
      TTL (chance `own`) and that turn wrote one, written at the new breakpoint, or uncached.
    A read needs an entry: only a turn whose own breakpoint was cacheable (at or over the model's
    minimum) wrote its prefix; turns under the minimum write nothing to read back.
    """

    __slots__ = ("static", "S", "turns", "keep", "steps", "uncached", "conv_hits", "output", "conv_rated", "write0", "read0")

    def __init__(self, S: int, In: int, Out: int, T: int, resend_history: bool, minimum: int, enabled: bool, conversation: bool,
                 own_live: float, batch: bool) -> None:
        static_cacheable = enabled and S >= minimum and S > 0
        own = 0.0 if batch else own_live
        uncached = conv_hits = 0.0
        steps: list[_Step] = []
        prev_written = False
        for k in range(1, T + 1):
            history = (k - 1) * (In + Out) if resend_history else 0
            lead = 0 if static_cacheable else S  # static tokens not covered by their own breakpoint
            dynamic = lead + history + In
            conv_cacheable = conversation and not batch and T > 1 and (S + history + In) >= minimum
            reads_own = conv_cacheable and prev_written and resend_history and k > 1
            read_add: float | None = None
            write_add: float | None = None
            if reads_own:
                # the previous turn's breakpoint covered everything up to its own input
                read_add = own * (dynamic - Out - In)
                write_add = own * (Out + In) + (1 - own) * dynamic
                conv_hits += own
            elif conv_cacheable:
                write_add = dynamic
            else:
                uncached += dynamic
            steps.append((k > 1 and not batch, read_add, write_add))
            prev_written = conv_cacheable
        self.static, self.S, self.turns = static_cacheable, S, T
        #: 1 - own: a later turn misses the static prefix only when its own gap and the others both missed.
        self.keep = 1.0 - own
        self.steps = tuple(steps)
        self.uncached, self.conv_hits, self.output = uncached, conv_hits, float(Out * T)
        self.conv_rated = conversation and T > 1 and not batch
        self.write0, self.read0, _ = self._terms(0.0)

    def _terms(self, first: float) -> tuple[float, float, float]:
        """(cache writes, cache reads, static hits summed over the turns)."""
        write = read = static_hits = 0.0
        if self.static:
            S = self.S
            later = 1.0 - self.keep * (1.0 - first)
            read_1, write_1, read_k, write_k = first * S, (1 - first) * S, later * S, (1 - later) * S
            for is_later, read_add, write_add in self.steps:
                if is_later:
                    read += read_k
                    write += write_k
                    static_hits += later
                else:
                    read += read_1
                    write += write_1
                    static_hits += first
                if read_add is not None:
                    read += read_add
                if write_add is not None:
                    write += write_add
            return write, read, static_hits
        for _, read_add, write_add in self.steps:
            if read_add is not None:
                read += read_add
            if write_add is not None:
                write += write_add
        return write, read, static_hits

    def cached(self, first: float) -> tuple[float, float]:
        """(cache writes, cache reads) of one conversation: all the pricing needs besides the constants."""
        if not self.static:
            return self.write0, self.read0
        write, read, _ = self._terms(first)
        return write, read

    def bill(self, first: float) -> TokenBill:
        write, read, static_hits = self._terms(first) if self.static else (self.write0, self.read0, 0.0)
        T = self.turns
        return TokenBill(
            uncached_input=self.uncached,
            cache_write=write,
            cache_read=read,
            output=self.output,
            static_hit_rate=static_hits / T if self.static else 0.0,
            conversation_hit_rate=self.conv_hits / (T - 1) if self.conv_rated else 0.0,
        )


_plan = lru_cache(maxsize=4096)(BillPlan)  # the same few plans serve every volume an agent is priced at
