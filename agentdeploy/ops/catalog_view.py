"""Rows for `deploy catalog show`: every entry's key figures with the source and date behind them.

The point of showing `source` and `as_of` next to each price is that a user can see at a glance
which figures are official, which are estimates, and which a local override replaced.
"""

from __future__ import annotations

from typing import Any

from agentdeploy.planner.catalog import Catalog


def catalog_rows(catalog: Catalog) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mid, m in sorted(catalog.claude_models.items()):
        rows.append(
            {
                "kind": "claude",
                "id": mid,
                "figures": f"in ${m.input_usd_per_mtok:g} / out ${m.output_usd_per_mtok:g} per Mtok, "
                f"tier {m.quality_tier}, cache min {m.min_cacheable_tokens}",
                "source": m.source,
                "as_of": m.as_of.isoformat(),
            }
        )
    for oid, o in sorted(catalog.open_models.items()):
        rows.append(
            {
                "kind": "open-model",
                "id": oid,
                "figures": f"{o.params_b:g}B ({o.hf_repo}), {o.memory_gb:g} GB",
                "source": o.source,
                "as_of": o.as_of.isoformat(),
            }
        )
    for iid, g in sorted(catalog.gpu_instances.items()):
        spot_src = g.field_sources.get("spot_usd_per_hour")
        rows.append(
            {
                "kind": "gpu",
                "id": iid,
                "figures": f"{g.gpu_count}x {g.gpu} {g.gpu_memory_gb:g} GB, on-demand ${g.on_demand_usd_per_hour:g}/h, "
                f"spot ${g.spot_usd_per_hour:g}/h",
                "source": g.source + (f"; spot: {spot_src}" if spot_src and spot_src not in g.source else ""),
                "as_of": g.as_of.isoformat(),
            }
        )
    return rows


def catalog_json(catalog: Catalog) -> dict[str, Any]:
    return catalog.model_dump(mode="json")
