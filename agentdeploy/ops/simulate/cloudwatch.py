"""CloudWatch as the scale loop sees it: datapoints and per-period statistics, for the alarms.

Datapoints are single values or statistic sets (what a node agent publishes each minute); a
period's value is the alarm metric's statistic over the datapoints stamped inside it, and a
period without one is missing (None), never zero. Alarm states and metric math are the stack's
own evaluator (`stacks/alarm_eval.py`), so the simulation and the stack's tests read the alarms
one way.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agentdeploy.stacks.alarm_eval import State, compile_expression, next_state
from agentdeploy.stacks.scaling_rules import AlarmRule, MetricRule, Statistic


@dataclass(frozen=True)
class StatSet:
    """One datum: a single value, or a statistic set (PutMetricData's StatisticValues)."""

    minimum: float
    maximum: float
    total: float
    count: float

    @classmethod
    def of(cls, value: float) -> StatSet:
        return cls(value, value, value, 1.0)


@dataclass
class MetricStore:
    """Datapoints per metric key (one stack and agent: the key names metric and dimension set)."""

    series: dict[str, tuple[list[float], list[StatSet]]] = field(default_factory=dict)

    def put(self, key: str, t: float, datum: StatSet) -> None:
        times, data = self.series.setdefault(key, ([], []))
        i = bisect.bisect_right(times, t)
        times.insert(i, t)
        data.insert(i, datum)

    def data(self, key: str, start: float, end: float) -> list[StatSet]:
        """Datapoints with start <= t < end."""
        times, data = self.series.get(key, ([], []))
        return data[bisect.bisect_left(times, start):bisect.bisect_left(times, end)]


def metric_key(metric: MetricRule) -> str:
    """Where a metric's datapoints live in the store: namespace, name and dimension set."""
    return f"{metric.namespace}/{metric.metric_name}/{metric.dimensions}"


def aggregate(data: Sequence[StatSet], statistic: Statistic) -> float | None:
    """One period's statistic over its data; None for a period without datapoints."""
    if not data:
        return None
    if statistic == "Maximum":
        return max(d.maximum for d in data)
    if statistic == "Minimum":
        return min(d.minimum for d in data)
    total, count = sum(d.total for d in data), sum(d.count for d in data)
    if statistic == "Sum":
        return total
    if statistic == "SampleCount":
        return count
    return total / count if count else None


def period_series(rule: AlarmRule) -> Callable[[MetricStore, float, float], float | None]:
    """The alarm's value for one period [start, end): its metric's statistic, or its expression
    over its metrics' statistics."""
    metrics = rule.metrics
    if rule.expression is None:
        key, stat = metric_key(metrics[0]), metrics[0].stat
        return lambda store, start, end: aggregate(store.data(key, start, end), stat)
    compiled = compile_expression(rule.expression)

    def series(store: MetricStore, start: float, end: float) -> float | None:
        return compiled({m.id: aggregate(store.data(metric_key(m), start, end), m.stat) for m in metrics})

    return series


@dataclass
class Alarm:
    """One alarm through a run: its state and the period values it last evaluated (oldest first).

    A complete period's value never changes here (datapoints are never stamped in the past of
    an evaluation), so each is computed once.
    """

    rule: AlarmRule
    state: State = "INSUFFICIENT_DATA"
    values: list[float | None] = field(default_factory=list)
    _cache: dict[float, float | None] = field(default_factory=dict)
    _series: Callable[[MetricStore, float, float], float | None] | None = None

    def evaluate(self, store: MetricStore, now: float) -> State:
        if self._series is None:
            self._series = period_series(self.rule)
        p = self.rule.period_s
        last_end = (now // p) * p
        starts = [last_end - (k + 1) * p for k in reversed(range(self.rule.evaluation_periods))]
        for start in starts:
            if start not in self._cache:
                self._cache[start] = self._series(store, start, start + p)
        self.values = [self._cache[s] for s in starts]
        if len(self._cache) > 4 * self.rule.evaluation_periods:
            self._cache = {s: self._cache[s] for s in starts}
        self.state = next_state(self.rule, self.values, self.state)
        return self.state
