"""One publishing interval of a node's demand, from readings every few seconds (pure).

A single reading a minute misses short requests: at one 2-second request a minute, most
15-minute windows would read all zeros and a busy fleet would scale to zero. So the agent reads
vLLM's load every few seconds and publishes, each minute, a CloudWatch statistic set of the
readings: Maximum is the interval's peak (what the idle alarm reads), Sum/SampleCount its time
average (what target tracking's Average reads). A request that starts and ends between two
readings is still seen: vLLM's finished-requests counter moved, so the interval's peak is at
least 1. An idle interval publishes an explicit 0 (idleness is evidence); an interval with no
reading at all publishes nothing (unknown is not idle).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StatisticSet:
    """CloudWatch's StatisticValues for one datum."""

    sample_count: float
    sum: float
    minimum: float
    maximum: float


@dataclass
class DemandWindow:
    """Readings since the last publish."""

    readings: list[float] = field(default_factory=list)
    #: The finished-requests counter at the window's start (None until the first reading).
    finished_at_start: float | None = None
    finished_last: float | None = None

    def add(self, demand: float, finished: float | None = None) -> None:
        """One reading: requests waiting + running (or held by the server), and vLLM's
        finished-requests counter where it exports one."""
        self.readings.append(max(0.0, demand))
        if finished is not None:
            if self.finished_at_start is None:
                self.finished_at_start = finished
            self.finished_last = finished

    def finished_in_window(self) -> float:
        """Requests finished between the window's first and last reading. A counter that went
        down (vLLM restarted) counts from zero, as Prometheus counters reset."""
        if self.finished_at_start is None or self.finished_last is None:
            return 0.0
        if self.finished_last < self.finished_at_start:
            return self.finished_last
        return self.finished_last - self.finished_at_start

    def statistics(self) -> StatisticSet | None:
        """The interval as a statistic set, or None when nothing was read."""
        if not self.readings:
            return None
        peak = max(self.readings)
        if self.finished_in_window() > 0:
            peak = max(peak, 1.0)  # a request came and went between readings
        return StatisticSet(sample_count=float(len(self.readings)), sum=sum(self.readings),
                            minimum=min(self.readings), maximum=peak)

    def next(self) -> DemandWindow:
        """The following window: it starts from this one's last counter reading, so a request
        finishing between the two windows' readings is counted in the next."""
        return DemandWindow(finished_at_start=self.finished_last, finished_last=self.finished_last)
