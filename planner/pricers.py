"""One agent's bills at any volume, with what does not depend on the volume worked out once.

The planner prices each of an agent's options at launch, at month 12, at every month of the ramp
and along the break-even scan: dozens of volumes for the same (model, caching, route) or (open
model, instance). `ApiPricer` and `FleetPricer` hold the volume-free parts (the conversation's
bill plan, the breakpoints' lifetimes, the per-token rates; the replica, the hours and fallback
share of each replica count) and redo only what the volume changes, with the same arithmetic
in the same order as `hits_at` + `conversation_bill` + `price_bill` and as `gpu_cost_at`, so a
plan priced either way is the same to the last bit (tests/planner/test_pricers.py holds them to
that).
"""

from __future__ import annotations

from agentdeploy.planner.caching import (
    TTL_SECONDS,
    BillPlan,
    CacheOption,
    Hits,
    TokenBill,
    batch_hit_rate,
    bill_plan,
    breakpoint_lifetimes,
    first_turn_hit,
)
from agentdeploy.planner.catalog import Catalog, ClaudeModel, GpuInstance, OpenModel
from agentdeploy.planner.cost import MonthCost, gpu_items, price_bill
from agentdeploy.planner.fleet import (
    FleetShape,
    on_demand_base,
    planned_estimate,
    prefill_rate,
    replica_counts,
    replica_for,
    replica_hours,
    shape_of,
    share_of,
)
from agentdeploy.planner.latency import Estimate, Prompt, prompt_of
from agentdeploy.planner.spec import AgentDecision

_OFF, _BATCH, _ARRIVALS = 0, 1, 2


class ApiPricer:
    """The monthly Claude bill of one agent on one model, caching option and route."""

    __slots__ = ("model", "option", "batch", "_plan", "_kind", "_own", "_covered", "_active_s", "_day_s", "_days", "_turns",
                 "_parallel", "_r_input", "_r_write", "_r_read", "_r_output", "_discount", "_fixed", "_totals")

    def __init__(self, agent: AgentDecision, model: ClaudeModel, option: CacheOption, catalog: Catalog, *, batch: bool) -> None:
        a, profile = catalog.assumptions, agent.profile
        self.model, self.option, self.batch = model, option, batch
        hours = agent.volume.resolved_active_hours
        self._days, self._turns, self._parallel = a.days_per_month, profile.turns, a.batch_parallel_writes
        self._active_s, self._day_s = hours * 3600 * a.days_per_month, hours * 3600.0
        self._own = self._covered = 0.0
        if batch:
            self._kind = _BATCH
        elif option.ttl is None:
            self._kind = _OFF
        else:
            self._kind = _ARRIVALS
            gap = profile.turn_gap_s or a.default_turn_gap_s
            cv = a.default_turn_gap_cv if profile.turn_gap_cv is None else profile.turn_gap_cv
            self._own, self._covered = breakpoint_lifetimes(profile.turns, TTL_SECONDS[option.ttl], gap, cv)
        self._plan: BillPlan = bill_plan(profile, model.min_cacheable_tokens, option, self._own, batch)
        rates = model.token_rates
        self._r_input, self._r_read, self._r_output = rates["input"], rates["cache_read"], rates["output"]
        self._r_write = rates["cache_write_1h" if option.ttl == "1h" else "cache_write_5m"]
        self._discount = model.batch_discount
        #: uncached input and output per conversation, priced: the same whatever the volume
        self._fixed = (self._plan.uncached * self._r_input, self._plan.output * self._r_output)
        self._totals: dict[float, float] = {}

    def _per_conversation(self, first: float) -> float:
        write, read = self._plan.cached(first)
        return self._fixed[0] + self._fixed[1] + write * self._r_write + read * self._r_read

    @property
    def min_per_conversation(self) -> float:
        """A bound under what one conversation costs at any volume (after the Batch discount, on
        that route): its bill is linear in the chance `first`, so at its least at 0 or 1."""
        least = min(self._per_conversation(0.0), self._per_conversation(1.0))
        return least * (1 - self._discount) if self.batch else least

    @property
    def max_per_conversation(self) -> float:
        """A bound over what one conversation costs at any volume (before any Batch discount)."""
        return max(self._per_conversation(0.0), self._per_conversation(1.0))

    def first(self, conversations: float) -> float:
        """The chance a conversation's first turn finds the static prefix live (`hits_at(...).first`)."""
        if self._kind == _ARRIVALS:
            active_s = self._active_s
            rate = conversations / active_s if active_s else 0.0
            return first_turn_hit(rate, self._covered, self._day_s)
        if self._kind == _BATCH:
            return batch_hit_rate(conversations / self._days, self._turns, self._parallel)
        return 0.0

    def hits(self, conversations: float) -> Hits:
        if self._kind == _OFF:
            return Hits(0.0, 0.0)
        return Hits(first=self.first(conversations), own=self._own)

    def bill(self, conversations: float) -> TokenBill:
        return self._plan.bill(self.first(conversations))

    def caches_nothing(self, conversations: float) -> bool:
        """No cache write and no cache read: the prefixes are all under the model's minimum."""
        write, read = self._plan.cached(self.first(conversations))
        return write == 0 and read == 0

    def total(self, conversations: float) -> float:
        """`price_bill(bill(v), ...).total`: the month's whole bill."""
        total = self._totals.get(conversations)
        if total is None:
            write, read = self._plan.cached(self.first(conversations))
            v = conversations
            uncached, output = self._fixed[0] * v, self._fixed[1] * v
            write, read = write * self._r_write * v, read * self._r_read * v
            discount = -(uncached + write + read + output) * self._discount if self.batch else 0.0
            total = self._totals[conversations] = round(uncached + write + read + output + discount, 6)
        return total

    def month(self, conversations: float) -> tuple[MonthCost, TokenBill]:
        """The month itemised, and the conversation's bill it comes from."""
        bill = self.bill(conversations)
        return price_bill(bill, self.model, self.option, batch=self.batch, conversations=conversations), bill


class FleetPricer:
    """The monthly cost of one agent on a fleet of one open model on one instance type."""

    __slots__ = ("replica", "_prompt", "_perf", "_prefill", "_turns", "_denom", "_peak_factor", "_hours", "_days", "_idle", "_cold",
                 "_on_demand", "_od_rate", "_spot_rate", "_ops", "_assumptions", "_at")

    def __init__(self, agent: AgentDecision, open_model: OpenModel, instance: GpuInstance, catalog: Catalog, ops_overhead: float,
                 idle_minutes: int, prompt: Prompt | None = None) -> None:
        prompt = prompt or prompt_of(agent.profile)
        a = catalog.assumptions
        self._assumptions = a
        self._perf = perf = instance.perf[open_model.size_class]
        self._prefill = prefill_rate(perf, instance, open_model, a)
        self._prompt = prompt
        self.replica = replica_for(agent, perf, a, self._prefill, prompt)
        self._hours, self._days = agent.volume.resolved_active_hours, a.days_per_month
        self._turns, self._peak_factor = agent.profile.turns, agent.volume.resolved_peak_factor
        self._denom = self._hours * 3600 * a.days_per_month
        self._idle, self._cold, self._on_demand = idle_minutes, instance.cold_start_s, on_demand_base(agent)
        self._od_rate, self._spot_rate, self._ops = instance.on_demand_usd_per_hour, instance.spot_usd_per_hour, ops_overhead
        #: (base, peak) -> replica hours, on-demand hours, spot hours, their GPU cost, the fallback share
        self._at: dict[tuple[int, int], tuple[float, float, float, float, float]] = {}

    def _rates(self, conversations: float) -> tuple[float, float]:
        """(average, busiest-hour) requests a second, as `traffic_for` has them."""
        requests = conversations * self._turns
        avg = requests / self._denom
        return avg, avg * self._peak_factor

    def _hours_of(self, counts: tuple[int, int]) -> tuple[float, float, float, float, float]:
        found = self._at.get(counts)
        if found is None:
            base, peak = counts
            hours, od_hours = replica_hours(self._on_demand, base, peak, self._hours, self._days, self._idle, self._cold)
            spot_hours = max(0.0, hours - od_hours)
            share = share_of(base, peak, spot_hours, hours, self._hours, self._peak_factor, self._assumptions, self._cold)
            found = self._at[counts] = (hours, od_hours, spot_hours, od_hours * self._od_rate + spot_hours * self._spot_rate, share)
        return found

    def total(self, conversations: float, fallback_usd: float) -> float:
        """`month(...)[0].total` (`gpu_items`' sum in its order); `fallback_usd` is the Claude
        fallback's whole bill at this volume."""
        counts = replica_counts(self.replica, *self._rates(conversations))
        *_, gpu_usd, share = self._hours_of(counts)
        return round(gpu_usd + share * fallback_usd + self._ops, 6)

    def base_at(self, conversations: float) -> int:
        """Replicas the fleet keeps through the active hours at this volume (more volume, never fewer)."""
        return replica_counts(self.replica, *self._rates(conversations))[0]

    def total_and_estimate(self, conversations: float, fallback_usd: float) -> tuple[float, Estimate]:
        """`month(...)`'s total and its shape's latency estimate, without the items or the shape."""
        avg, peak_rps = self._rates(conversations)
        counts = replica_counts(self.replica, avg, peak_rps)
        *_, gpu_usd, share = self._hours_of(counts)
        estimate = planned_estimate(self._prompt, self._perf, self.replica, self._prefill, counts[1], peak_rps)
        return round(gpu_usd + share * fallback_usd + self._ops, 6), estimate

    def month(self, conversations: float, fallback_usd: float) -> tuple[MonthCost, FleetShape]:
        rates = self._rates(conversations)
        counts = replica_counts(self.replica, *rates)
        hours, od_hours, spot_hours, _, share = self._hours_of(counts)
        shape = shape_of(self._prompt, self._perf, self.replica, self._prefill, counts, (hours, od_hours), rates)
        items = gpu_items(on_demand_hours=od_hours, spot_hours=spot_hours, on_demand_rate=self._od_rate, spot_rate=self._spot_rate,
                          fallback_api_usd=share * fallback_usd, ops_overhead_usd=self._ops)
        return items, shape


class AgentPricers:
    """An agent's pricers, each built on first use: the planner asks for the same ones many times."""

    __slots__ = ("agent", "catalog", "ops_overhead", "idle_minutes", "_api", "_fleet", "_prompt")

    def __init__(self, agent: AgentDecision, catalog: Catalog, ops_overhead: float = 0.0, idle_minutes: int | None = None) -> None:
        self.agent, self.catalog, self.ops_overhead = agent, catalog, ops_overhead
        self.idle_minutes = catalog.assumptions.idle_minutes_default if idle_minutes is None else idle_minutes
        self._api: dict[tuple[int, str | None, bool, bool], ApiPricer] = {}
        self._fleet: dict[tuple[int, int], FleetPricer] = {}
        self._prompt: Prompt | None = None

    def api(self, model: ClaudeModel, option: CacheOption, *, batch: bool) -> ApiPricer:
        key = (id(model), option.ttl, option.conversation, batch)  # catalog entries live as long as the catalog, and so do these pricers
        pricer = self._api.get(key)
        if pricer is None:
            pricer = self._api[key] = ApiPricer(self.agent, model, option, self.catalog, batch=batch)
        return pricer

    def fleet(self, open_model: OpenModel, instance: GpuInstance) -> FleetPricer:
        key = (id(open_model), id(instance))
        pricer = self._fleet.get(key)
        if pricer is None:
            if self._prompt is None:
                self._prompt = prompt_of(self.agent.profile)
            pricer = self._fleet[key] = FleetPricer(self.agent, open_model, instance, self.catalog, self.ops_overhead, self.idle_minutes,
                                                    self._prompt)
        return pricer

