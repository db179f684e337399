"""Cost arithmetic: token bills priced with the catalog, GPU hours priced by the mix.

Everything here is monthly USD and itemised the way a user checks an invoice: uncached input,
cache writes, cache reads, output, the Batch discount, GPU hours by spot and on-demand, and the
Claude spend of traffic a self-hosted agent falls back on.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.planner.caching import CacheOption, TokenBill
from agentdeploy.planner.catalog import ClaudeModel
from agentdeploy.planner.plan import CostItems
from agentdeploy.tokens import TokenKind


@dataclass(frozen=True, slots=True)
class MonthCost:
    """One month's cost, itemised (USD): the planner's working value, `CostItems` in the plan.

    A plain dataclass because the planner prices tens of thousands of these per plan; the
    plan's pydantic model is built once per chosen option (`items`).
    """

    uncached_input: float = 0.0
    cache_write: float = 0.0
    cache_read: float = 0.0
    output: float = 0.0
    batch_discount: float = 0.0
    gpu_spot: float = 0.0
    gpu_on_demand: float = 0.0
    fallback_api: float = 0.0
    ops_overhead: float = 0.0
    total: float = 0.0

    def items(self) -> CostItems:
        return CostItems(
            uncached_input=self.uncached_input, cache_write=self.cache_write, cache_read=self.cache_read, output=self.output,
            batch_discount=self.batch_discount, gpu_spot=self.gpu_spot, gpu_on_demand=self.gpu_on_demand, fallback_api=self.fallback_api,
            ops_overhead=self.ops_overhead, total=self.total,
        )


def _priced(bill: TokenBill, model: ClaudeModel, option: CacheOption, batch: bool, conversations: float) -> tuple[float, float, float, float, float]:
    write_kind: TokenKind = "cache_write_1h" if option.ttl == "1h" else "cache_write_5m"
    rates = model.token_rates
    uncached = bill.uncached_input * rates["input"] * conversations
    write = bill.cache_write * rates[write_kind] * conversations
    read = bill.cache_read * rates["cache_read"] * conversations
    output = bill.output * rates["output"] * conversations
    return uncached, write, read, output, (-(uncached + write + read + output) * model.batch_discount if batch else 0.0)


def price_bill(bill: TokenBill, model: ClaudeModel, option: CacheOption, *, batch: bool, conversations: float) -> MonthCost:
    """Monthly cost of `conversations` conversations billed as `bill`."""
    uncached, write, read, output, discount = _priced(bill, model, option, batch, conversations)
    return MonthCost(
        uncached_input=round(uncached, 6),
        cache_write=round(write, 6),
        cache_read=round(read, 6),
        output=round(output, 6),
        batch_discount=round(discount, 6),
        total=round(uncached + write + read + output + discount, 6),
    )


def gpu_items(
    *,
    on_demand_hours: float,
    spot_hours: float,
    on_demand_rate: float,
    spot_rate: float,
    fallback_api_usd: float,
    ops_overhead_usd: float,
) -> MonthCost:
    od = on_demand_hours * on_demand_rate
    spot = spot_hours * spot_rate
    total = od + spot + fallback_api_usd + ops_overhead_usd  # `FleetPricer.total` sums in this order
    return MonthCost(
        gpu_on_demand=round(od, 6),
        gpu_spot=round(spot, 6),
        fallback_api=round(fallback_api_usd, 6),
        ops_overhead=round(ops_overhead_usd, 6),
        total=round(total, 6),
    )
