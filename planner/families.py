"""Which instance types a fleet may launch: the chosen one, and every other that can stand in.

Spot capacity runs out per instance type and zone; a fleet that can launch only one family
waits whenever that family is short. So the Auto Scaling group gets every catalog type that
fits the model (the planner's `fits`: GPU memory for the weights and KV cache, and speed
figures for the model's size) on the same number of GPUs (one vLLM command line serves the
whole group), and is at least as fast as the chosen type on every figure the fleet's sizing
reads: knee concurrency, aggregate and single-stream tokens/s, prefill rate, and first-token
p95. The rule: the replica count, concurrency cap and latency the plan computed for the chosen
(cheapest) type then hold whichever type the group launches; a slower type, however cheap,
stays out. Cost: the plan prices the chosen type; a type costing more than MAX_PRICE_RATIO
times its on-demand price stays out too, so a spot shortage can raise the bill by at most that
factor for the replicas it affects. Order: the chosen type first, then by on-demand price (the
on-demand allocation takes the list's order), so the group prefers the type the plan priced.

Pure: the catalog and the chosen option in, the list and one line of reasons out.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.planner.catalog import Catalog, GpuInstance, InstancePerf, OpenModel
from agentdeploy.planner.fleet import fits, prefill_rate

#: Overrides AWS allows in one mixed-instances policy (LaunchTemplateOverrides: up to 40); kept
#: well below so a plan stays readable.
MAX_TYPES = 12
#: The most a stand-in type may cost an hour (on-demand), as a multiple of the chosen type's.
MAX_PRICE_RATIO = 3.0


@dataclass(frozen=True)
class Spread:
    """The instance types a fleet launches, chosen first, and why these."""

    types: list[str]
    families: list[str]
    reason: str


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def _slower(mine: InstancePerf, theirs: InstancePerf, mine_prefill: float, theirs_prefill: float) -> list[str]:
    """The sizing figures on which `theirs` falls short of `mine`."""
    out = []
    if theirs.knee_concurrency < mine.knee_concurrency:
        out.append(f"knee concurrency {theirs.knee_concurrency} < {mine.knee_concurrency}")
    if theirs.aggregate_tok_s < mine.aggregate_tok_s:
        out.append(f"{theirs.aggregate_tok_s:g} < {mine.aggregate_tok_s:g} tok/s aggregate")
    if theirs.single_stream_tok_s < mine.single_stream_tok_s:
        out.append(f"{theirs.single_stream_tok_s:g} < {mine.single_stream_tok_s:g} tok/s per stream")
    if theirs_prefill < mine_prefill:
        out.append(f"prefill {theirs_prefill:,.0f} < {mine_prefill:,.0f} tok/s")
    if theirs.ttft_p95_s_at_knee > mine.ttft_p95_s_at_knee:
        out.append(f"first-token p95 {theirs.ttft_p95_s_at_knee:g} > {mine.ttft_p95_s_at_knee:g} s")
    return out


def why_not(catalog: Catalog, model: OpenModel, chosen: str, candidate: str) -> list[str]:
    """Why `candidate` cannot stand in for `chosen` for `model` (empty: it can)."""
    mine, theirs = catalog.gpu_instances[chosen], catalog.gpu_instances[candidate]
    if not fits(model, theirs):
        if model.size_class in theirs.perf or model.memory_gb > theirs.gpu_memory_gb * 0.95:
            return [f"{theirs.gpu_memory_gb:g} GB of GPU memory, {model.memory_gb:g} GB needed"]
        return [f"no speed figures for {model.size_class} models"]
    if theirs.gpu_count != mine.gpu_count:
        return [f"{theirs.gpu_count} GPUs, not {mine.gpu_count} (one vLLM command line serves the group)"]
    if theirs.on_demand_usd_per_hour > MAX_PRICE_RATIO * mine.on_demand_usd_per_hour:
        return [f"${theirs.on_demand_usd_per_hour:g}/h, over {MAX_PRICE_RATIO:g}x {chosen}'s ${mine.on_demand_usd_per_hour:g}/h"]
    a = catalog.assumptions
    return _slower(mine.perf[model.size_class], theirs.perf[model.size_class],
                   prefill_rate(mine.perf[model.size_class], mine, model, a),
                   prefill_rate(theirs.perf[model.size_class], theirs, model, a))


def _label(itype: str, inst: GpuInstance) -> str:
    return f"{itype} ({inst.gpu}, ${inst.on_demand_usd_per_hour:g}/h)"


def spread(catalog: Catalog, model: OpenModel, chosen: str) -> Spread:
    """The types the fleet of `model` on `chosen` may launch, and the reason line for the plan."""
    others = sorted((t for t in catalog.gpu_instances if t != chosen),
                    key=lambda t: (catalog.gpu_instances[t].on_demand_usd_per_hour, t))
    refused = {t: why_not(catalog, model, chosen, t) for t in others}
    types = [chosen] + [t for t in others if not refused[t]][: MAX_TYPES - 1]
    families = list(dict.fromkeys(family(t) for t in types))
    listed = ", ".join(_label(t, catalog.gpu_instances[t]) for t in types)
    if len(families) > 1:
        reason = (f"Instance types {listed}: {len(families)} families, so spot shortages of one family do not stop the "
                  f"fleet; each holds the model and is at least as fast as {chosen} for {model.size_class} models, "
                  f"so the plan's sizing holds on any of them.")
    else:
        # one line per other family: the first type that comes closest, and what it lacks
        closest: dict[str, str] = {}
        for t in others:
            if family(t) not in families and family(t) not in closest:
                closest[family(t)] = f"{t}: {'; '.join(refused[t])}"
        reason = (f"Instance types {listed}: one family only, because no other family can stand in for {chosen} "
                  f"({'; '.join(closest.values()) or 'the catalog has no other GPU family'}).")
    return Spread(types, families, reason)
