"""Circuit breaker per upstream target (one vLLM replica, or the Claude API).

Closed: traffic flows; `failure_threshold` consecutive failures open it, and so does a failure
rate of at least `failure_rate` over the last `window` outcomes — a replica that fails every
other request never fails three in a row, yet costs every second caller a timeout. Open: no
traffic for `open_for` seconds, so a dead replica stops costing every request a connect
attempt. Then half-open: exactly one trial request decides — success closes it, failure
re-opens it for twice as long (capped at `max_open_s`). A breaker that re-opens soon after it
closed (within `max_open_s`) is flapping: its open time doubles too, so the flapping replica
steals less and less latency while traffic still returns once it is healthy.

Recovery is bounded both ways. `open_s` is the probe interval: a trial request reaches a dead
target at most once per `open_s` (every failed trial restarts the wait, which is never shorter
than `open_s`), so no request herd and no retry of a dead primary on every request. And a
target comes back within `max_open_s` plus the next request's arrival without any health
signal, or within `open_s` of a successful health probe (`probe_ok`: the poller saw it answer),
however far its open time had doubled — so `max_open_s` must stay well under the recovery time
the plan promises (10 s), not the minute it once was.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}


class Breaker:
    __slots__ = ("threshold", "base_open_s", "max_open_s", "rate", "window", "outcomes", "state", "failures",
                 "opened_at", "closed_at", "open_for", "trial_in_flight", "clock")

    def __init__(self, failure_threshold: int = 3, open_s: float = 2.0, max_open_s: float = 8.0,
                 failure_rate: float = 0.5, window: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failure_threshold
        self.base_open_s = open_s
        self.max_open_s = max_open_s
        self.rate = failure_rate
        self.window = window
        #: Recent outcomes while closed, newest last (True = failure); cleared on every close.
        self.outcomes: deque[bool] = deque(maxlen=window)
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.closed_at: float | None = None
        self.open_for = open_s
        self.trial_in_flight = False
        self.clock = clock

    def available(self) -> bool:
        """Whether a request may be sent now (without claiming the half-open trial)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return self.clock() - self.opened_at >= self.open_for
        return not self.trial_in_flight

    def acquire(self) -> bool:
        """Claim permission to send one request; in half-open only one trial at a time."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self.clock() - self.opened_at < self.open_for:
                return False
            self.state = HALF_OPEN
            self.trial_in_flight = False
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def success(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.closed_at = self.clock()
            self.outcomes.clear()
        else:
            self.outcomes.append(False)
        self.failures = 0
        self.trial_in_flight = False

    def failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN:
            self._open(min(self.max_open_s, self.open_for * 2))
            return
        if self.state != CLOSED:
            return
        self.outcomes.append(True)
        by_rate = len(self.outcomes) == self.window and sum(self.outcomes) >= self.rate * self.window
        if self.failures >= self.threshold or by_rate:
            self._open(self._next_open_for())

    def _next_open_for(self) -> float:
        """Base open time, doubled (capped) when the breaker closed only a moment ago."""
        flapping = self.closed_at is not None and self.clock() - self.closed_at < self.max_open_s
        return min(self.max_open_s, self.open_for * 2) if flapping else self.base_open_s

    def release(self) -> None:
        """The request ended without saying anything about health (429, a client error)."""
        self.trial_in_flight = False

    def trip(self) -> None:
        """Open at once (connection refused by a health probe: no point counting to three)."""
        if self.state == OPEN:
            self.opened_at = self.clock()
            return
        self._open(min(self.max_open_s, self.open_for * 2) if self.state == HALF_OPEN else self._next_open_for())

    def probe_ok(self) -> None:
        """A health probe answered: an open breaker may take one trial once `open_s` has passed
        since it (re-)opened, even when a flapping history doubled its open time: the probe is
        fresher evidence than the history, and trials stay one per `open_s`."""
        if self.state == OPEN and self.clock() - self.opened_at >= min(self.open_for, self.base_open_s):
            self.state = HALF_OPEN
            self.trial_in_flight = False

    def _open(self, open_for: float) -> None:
        self.state = OPEN
        self.opened_at = self.clock()
        self.open_for = open_for
        self.trial_in_flight = False
