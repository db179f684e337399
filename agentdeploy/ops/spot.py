"""Current spot prices into a catalog override the planner picks up by itself.

`deploy catalog refresh-spot` asks EC2 for the price now in effect in every availability zone
for each GPU instance type the catalog knows, and writes
$AGENTDEPLOY_HOME/catalog.d/spot-<region>.yaml, which `load_catalog()` merges over the built-in
data. The figure kept is the median across zones: an ASG with price-capacity-optimized lands in
the zones with capacity, not always the cheapest one, so the minimum would flatter the plan and
the maximum punish it. The entry keeps its provenance: `source`/`as_of` describe this refresh and
`field_sources` keeps where the on-demand figure came from.

A quote above on-demand or under 5% of it is an outlier (AWS advertises "up to 90% off", and the
spot price is capped at on-demand): a test endpoint, a product mix-up or a glitch. It is never
written unless the caller accepts outliers; the figure already in force for that type (an earlier
refresh's, else the built-in one) stays, because one bad quote would otherwise reprice every plan.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from agentdeploy.ops.aws import AwsClient

PRODUCTS = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]
#: Below this share of on-demand a quote is suspicious (AWS: "up to 90% off").
SUSPICIOUS_BELOW = 0.05


@dataclass(frozen=True)
class SpotQuote:
    instance_type: str
    median: float
    low: float
    high: float
    zones: int


def agentdeploy_home() -> Path:
    return Path(os.environ.get("AGENTDEPLOY_HOME", Path.home() / ".agentdeploy"))


def override_path(region: str, home: Path | None = None) -> Path:
    return (home or agentdeploy_home()) / "catalog.d" / f"spot-{region}.yaml"


def fetch_history(ec2: AwsClient, instance_types: list[str], now: datetime) -> list[dict]:
    """The spot price in effect at `now` for each type and zone (StartTime=now asks for exactly that)."""
    if not instance_types:
        return []
    return ec2.paginate(
        "describe_spot_price_history",
        "SpotPriceHistory",
        InstanceTypes=instance_types,
        ProductDescriptions=PRODUCTS,
        StartTime=now,
        EndTime=now,
    )


def summarise(history: list[dict]) -> dict[str, SpotQuote]:
    """Latest price per (type, zone), then the median across zones per type."""
    latest: dict[tuple[str, str], tuple[Any, float]] = {}
    for row in history:
        key = (row["InstanceType"], row["AvailabilityZone"])
        stamp, price = row.get("Timestamp"), float(row["SpotPrice"])
        if key not in latest or (stamp is not None and stamp > latest[key][0]):
            latest[key] = (stamp, price)
    per_type: dict[str, list[float]] = {}
    for (itype, _), (_, price) in latest.items():
        per_type.setdefault(itype, []).append(price)
    return {
        itype: SpotQuote(itype, round(statistics.median(p), 6), min(p), max(p), len(p))
        for itype, p in sorted(per_type.items())
    }


def outlier(quote: SpotQuote, on_demand_usd_per_hour: float) -> str | None:
    """Why a quote is implausible, or None."""
    od = on_demand_usd_per_hour
    if quote.median > od:
        return f"spot {quote.median:g} $/h is above on-demand {od:g} $/h"
    if quote.median < od * SUSPICIOUS_BELOW:
        return f"spot {quote.median:g} $/h is under {SUSPICIOUS_BELOW:.0%} of on-demand {od:g} $/h"
    return None


def override_document(
    quotes: dict[str, SpotQuote],
    gpu_instances: dict[str, Any],
    region: str,
    today: date,
    accept_outliers: bool = False,
    previous: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The override file's content and warnings about quotes that look wrong.

    An outlier is left out (the `previous` file's entry for it is kept) unless `accept_outliers`.
    """
    entries: dict[str, Any] = {}
    warnings: list[str] = []
    for itype, quote in quotes.items():
        base = gpu_instances.get(itype)
        if base is None:
            continue
        odd = outlier(quote, base.on_demand_usd_per_hour)
        if odd is not None and not accept_outliers:
            kept = (previous or {}).get(itype)
            if kept is not None:
                entries[itype] = kept
            warnings.append(f"{itype}: {odd}; not written (pass --accept-outliers to write it), "
                            f"{'the previous refresh' if kept is not None else 'the catalog'}'s figure kept")
            continue
        if odd is not None:
            warnings.append(f"{itype}: {odd}; written as asked (--accept-outliers)")
        text = (
            f"AWS EC2 DescribeSpotPriceHistory, {region}, Linux/UNIX: median of the current price "
            f"in {quote.zones} zone(s) (low {quote.low:g}, high {quote.high:g})"
        )
        field_sources = {"spot_usd_per_hour": f"{text} ({today.isoformat()})"}
        if "on_demand_usd_per_hour" not in base.field_sources:
            field_sources["on_demand_usd_per_hour"] = f"{base.source} ({base.as_of.isoformat()})"
        entries[itype] = {
            "spot_usd_per_hour": quote.median,
            "source": text,
            "as_of": today.isoformat(),
            "field_sources": field_sources,
        }
    missing = sorted(set(gpu_instances) - set(quotes))
    if missing:
        warnings.append(f"no spot price in {region} for: {', '.join(missing)} (catalog figures kept)")
    return {"gpu_instances": entries}, warnings


def read_override(region: str, home: Path | None = None) -> dict[str, Any]:
    """The entries of this region's earlier refresh (empty when there is none or it is unreadable:
    the new refresh then stands on its own)."""
    path = override_path(region, home)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    entries = data.get("gpu_instances") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def write_override(document: dict[str, Any], region: str, home: Path | None = None) -> Path:
    path = override_path(region, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = (
        f"# Written by `deploy catalog refresh-spot --region {region}`; the planner merges it over the\n"
        f"# built-in catalog. Delete this file to go back to the built-in spot prices.\n"
    ) + yaml.safe_dump(document, sort_keys=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(body)
    tmp.replace(path)  # atomic: a planner reading concurrently sees the old file or the new one
    return path
