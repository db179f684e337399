"""A minimal Prometheus registry: dict-keyed counters, gauges and histograms.

prometheus_client takes a lock and builds label objects on every call; the gateway's budget is
well under a millisecond per request, so series are plain dict entries keyed by label tuples
and the text format is built only when /metrics is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TypeAlias

#: One series' label values, in the order of its label names (an HTTP status is an int).
Labels: TypeAlias = tuple[str | int, ...]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(v: str | int) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name, self.help, self.labelnames = name, help, labels
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, labels: Labels) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        return [f"{self.name}{_labels(self.labelnames, k)} {v!r}" for k, v in self.values.items()]


class Gauge(Counter):
    kind = "gauge"

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = float(value)


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.labelnames, self.buckets = name, help, labels, buckets
        self.values: dict[Labels, list[float]] = {}  # labels -> [bucket counts..., sum, count] (counts are ints)

    def observe(self, labels: Labels, value: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0] * (len(self.buckets) + 1) + [0.0, 0]
        row[bisect_left(self.buckets, value)] += 1
        row[-2] += value
        row[-1] += 1

    def count(self, labels: Labels) -> int:
        row = self.values.get(labels)
        return int(row[-1]) if row else 0

    def render(self) -> list[str]:
        out = []
        for k, row in self.values.items():
            acc: float = 0  # stays an int: the bucket counts are ints
            for bound, n in zip(self.buckets, row, strict=False):
                acc += n
                le = 'le="' + str(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, k, le)} {acc}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.labelnames, k, inf)} {row[-1]}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, k)} {row[-2]!r}")
            out.append(f"{self.name}_count{_labels(self.labelnames, k)} {row[-1]}")
        return out


class GatewayMetrics:
    """Every series the gateway publishes, per agent and upstream."""

    def __init__(self) -> None:
        p = "agentdeploy_gateway_"
        self.requests = Counter(p + "requests_total", "Client requests by agent, upstream that answered, and HTTP status.", ("agent", "upstream", "model", "status"))
        self.errors = Counter(p + "upstream_errors_total", "Failed upstream attempts by reason.", ("agent", "upstream", "reason"))
        self.fallbacks = Counter(p + "fallbacks_total", "Moves to the next chain entry, by the upstream left and why.", ("agent", "upstream", "reason"))
        self.ttft = Histogram(p + "ttft_seconds", "Time from request arrival to the first token sent on.", ("agent", "upstream"))
        self.latency = Histogram(p + "request_seconds", "Time from request arrival to the last byte.", ("agent", "upstream"))
        self.overhead = Histogram(p + "overhead_seconds", "Time the gateway itself added (not waiting on upstreams).", ("agent",), (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05))
        self.tokens = Counter(p + "tokens_total", "Tokens by type (input, output, cache_write_5m, cache_write_1h, cache_read).", ("agent", "model", "type"))
        self.cost = Counter(p + "cost_usd_total", "Spend accounted from actual usage, USD.", ("agent", "model"))
        self.budget_remaining = Gauge(p + "budget_remaining_usd", "Budget left this window after spend and open reservations.", ("agent",))
        self.budget_rejections = Counter(p + "budget_rejections_total", "Requests refused or degraded by the budget policy.", ("agent", "action"))
        self.circuit = Gauge(p + "circuit_state", "Breaker state per target: 0 closed, 1 half-open, 2 open.", ("upstream", "target"))
        self.queue = Gauge(p + "replica_load", "Running + waiting requests per replica (from its /metrics).", ("upstream", "target"))
        self.draining = Gauge(p + "replica_draining", "1 while the replica's node agent says it is draining: no new requests.", ("upstream", "target"))
        self.in_flight = Gauge(p + "in_flight", "Requests being served now.", ())
        self.stream_errors = Counter(p + "stream_errors_total", "Streams ended with an in-band error after bytes were sent.", ("agent", "upstream", "reason"))
        self.resends = Counter(p + "upstream_resends_total", "Requests sent again after a reused upstream connection failed unanswered.", ("target",))
        self.retries = Counter(p + "upstream_retries_total", "Attempts sent again to the same upstream (429/529 waits, transient failures).", ("agent", "upstream", "reason"))
        self.continuations = Counter(p + "continuations_total", "Streams broken after their first token, by outcome (continued, refused).", ("agent", "upstream", "outcome"))
        self.unmet = Counter(p + "unmet_demand_total", "Requests meant for a self-hosted fleet it could not take (no healthy node, all full), by reason.", ("agent", "upstream", "reason"))
        self.discovered = Gauge(p + "fleet_nodes", "Nodes discovery last found routable, per fleet upstream.", ("upstream",))
        self.discovery_errors = Counter(p + "discovery_errors_total", "Failed reads of a fleet's nodes from AWS (the last list is kept), by error.", ("upstream", "error"))
        self.wakes = Counter(p + "fleet_wakes_total", "Wake attempts for a fleet without a healthy node, by outcome (woken, already_up, rate_limited, error, ...).", ("upstream", "outcome"))
        self.all: list[Counter | Histogram] = [self.requests, self.errors, self.fallbacks, self.ttft, self.latency, self.overhead, self.tokens, self.cost,
                    self.budget_remaining, self.budget_rejections, self.circuit, self.queue, self.draining, self.in_flight, self.stream_errors,
                    self.resends, self.retries, self.continuations, self.unmet, self.discovered, self.discovery_errors, self.wakes]

    def render(self) -> bytes:
        lines: list[str] = []
        for m in self.all:
            lines.append(f"# HELP {m.name} {m.help}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            lines.extend(m.render())
        return ("\n".join(lines) + "\n").encode()
