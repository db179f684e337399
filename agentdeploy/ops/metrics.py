"""Read the demand and spend metrics the node agents and the gateway publish to CloudWatch.

Series are found with `list_metrics` on the Stack and Agent dimensions, which matches every
series carrying *at least* those dimensions: a publisher that adds its own (InstanceId, Replica)
is still seen. Querying the exact two-dimension series instead would read nothing for such a
publisher, and the reaper would take a busy fleet for an idle one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agentdeploy.naming import (
    DIM_AGENT,
    DIM_STACK,
    METRIC_DEMAND,
    METRIC_IN_FLIGHT,
    METRIC_NAMESPACE,
    METRIC_QUEUE_DEPTH,
)
from agentdeploy.ops.aws import AwsClient

DEMAND_METRICS = (METRIC_DEMAND, METRIC_QUEUE_DEPTH, METRIC_IN_FLIGHT)
_MAX_QUERIES = 500  # GetMetricData's limit per call


@dataclass(frozen=True)
class Reading:
    """What the series said over a window: the peak (or sum) and how many datapoints backed it."""

    value: float | None
    datapoints: int
    series: int


def find_series(cw: AwsClient, metric: str, stack: str, agent: str) -> list[dict]:
    """Each series once (deduplicated: moto lists a series once per datapoint)."""
    listed = cw.paginate(
        "list_metrics",
        "Metrics",
        Namespace=METRIC_NAMESPACE,
        MetricName=metric,
        Dimensions=[{"Name": DIM_STACK, "Value": stack}, {"Name": DIM_AGENT, "Value": agent}],
    )
    unique: dict[tuple, dict] = {}
    for m in listed:
        key = (m["Namespace"], m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m.get("Dimensions", []))))
        unique.setdefault(key, m)
    return list(unique.values())


def _query(cw: AwsClient, series: list[dict], stat: str, period: int, start: datetime, end: datetime) -> list[float]:
    values: list[float] = []
    for offset in range(0, len(series), _MAX_QUERIES):
        chunk = series[offset : offset + _MAX_QUERIES]
        queries = [
            {"Id": f"m{n}", "MetricStat": {"Metric": m, "Period": period, "Stat": stat}, "ReturnData": True}
            for n, m in enumerate(chunk)
        ]
        for result in cw.paginate(
            "get_metric_data", "MetricDataResults", MetricDataQueries=queries, StartTime=start, EndTime=end
        ):
            values.extend(float(v) for v in result.get("Values", []))
    return values


def demand_peak(cw: AwsClient, stack: str, agent: str, start: datetime, end: datetime) -> Reading:
    """Highest demand (waiting + running, queue depth or in-flight) any replica reported."""
    series = [m for name in DEMAND_METRICS for m in find_series(cw, name, stack, agent)]
    if not series:
        return Reading(value=None, datapoints=0, series=0)
    values = _query(cw, series, "Maximum", 60, start, end)
    return Reading(value=max(values) if values else None, datapoints=len(values), series=len(series))


def metric_sum(cw: AwsClient, metric: str, stack: str, agent: str, start: datetime, end: datetime) -> Reading:
    """Total of a counter-like metric (e.g. SpendUSD) over the window, across all its series."""
    series = find_series(cw, metric, stack, agent)
    if not series:
        return Reading(value=None, datapoints=0, series=0)
    span_s = max(60, int((end - start).total_seconds()))
    # One datapoint per day is enough for a sum and keeps a month inside one page.
    period = 86400 if span_s > 86400 else 60
    values = _query(cw, series, "Sum", period, start, end)
    return Reading(value=sum(values) if values else None, datapoints=len(values), series=len(series))
