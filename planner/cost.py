"""Cost arithmetic: token bills priced with the catalog, GPU hours priced by the mix.

Everything here is monthly USD and itemised the way a user checks an invoice: uncached input,
cache writes, cache reads, output, the Batch discount, GPU hours by spot and on-demand, and the
Claude spend of traffic a self-hosted agent falls back on.
"""

from __future__ import annotations

from agentdeploy.planner.caching import CacheOption, TokenBill
from agentdeploy.planner.catalog import ClaudeModel
from agentdeploy.planner.plan import CostItems
from agentdeploy.tokens import TokenKind


def price_bill(bill: TokenBill, model: ClaudeModel, option: CacheOption, *, batch: bool, conversations: float) -> CostItems:
    """Monthly cost of `conversations` conversations billed as `bill`."""
    write_kind: TokenKind = "cache_write_1h" if option.ttl == "1h" else "cache_write_5m"
    uncached = bill.uncached_input * model.usd_per_token("input") * conversations
    write = bill.cache_write * model.usd_per_token(write_kind) * conversations
    read = bill.cache_read * model.usd_per_token("cache_read") * conversations
    output = bill.output * model.usd_per_token("output") * conversations
    gross = uncached + write + read + output
    discount = -gross * model.batch_discount if batch else 0.0
    # built without re-validation: every figure is a float computed here (the planner's hot path)
    return CostItems.model_construct(
        uncached_input=round(uncached, 6),
        cache_write=round(write, 6),
        cache_read=round(read, 6),
        output=round(output, 6),
        batch_discount=round(discount, 6),
        gpu_spot=0.0, gpu_on_demand=0.0, fallback_api=0.0, ops_overhead=0.0,
        total=round(gross + discount, 6),
    )


def gpu_items(
    *,
    on_demand_hours: float,
    spot_hours: float,
    on_demand_rate: float,
    spot_rate: float,
    fallback_api_usd: float,
    ops_overhead_usd: float,
) -> CostItems:
    od = on_demand_hours * on_demand_rate
    spot = spot_hours * spot_rate
    total = od + spot + fallback_api_usd + ops_overhead_usd
    return CostItems.model_construct(
        uncached_input=0.0, cache_write=0.0, cache_read=0.0, output=0.0, batch_discount=0.0,
        gpu_on_demand=round(od, 6),
        gpu_spot=round(spot, 6),
        fallback_api=round(fallback_api_usd, 6),
        ops_overhead=round(ops_overhead_usd, 6),
        total=round(total, 6),
    )
