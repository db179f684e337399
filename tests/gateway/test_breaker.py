"""serving/breaker.py: opening, the half-open trial, backing off a flapping replica."""

from agentdeploy.serving.breaker import CLOSED, HALF_OPEN, OPEN, Breaker


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_breaker_opens_probes_and_backs_off_when_flapping():
    clock = Clock()
    b = Breaker(failure_threshold=2, open_s=1.0, max_open_s=4.0, clock=clock)
    b.failure()
    assert b.state == CLOSED
    assert b.acquire()
    b.failure()
    assert b.state == OPEN
    assert not b.acquire()
    clock.t = 1.0
    assert b.acquire()
    assert b.state == HALF_OPEN
    assert not b.acquire()  # one trial at a time
    b.failure()  # trial failed: open again, twice as long
    assert b.state == OPEN
    assert b.open_for == 2.0
    clock.t = 2.5
    assert not b.available()
    clock.t = 3.0
    assert b.acquire()
    b.success()
    assert b.state == CLOSED
    assert b.acquire()


def test_breaker_opens_on_a_replica_failing_every_other_request():
    """Never two failures in a row, so the consecutive rule alone would keep it closed forever."""
    clock = Clock()
    b = Breaker(failure_threshold=2, open_s=1.0, max_open_s=8.0, failure_rate=0.5, window=6, clock=clock)
    for i in range(5):
        assert b.acquire()
        b.success() if i % 2 == 0 else b.failure()
        assert b.state == CLOSED, i
    assert b.acquire()
    b.failure()  # 3 failures out of the last 6
    assert b.state == OPEN
    assert b.open_for == 1.0
    clock.t = 1.0
    assert b.acquire()
    b.success()  # the trial passed: closed, with a clean window
    assert b.state == CLOSED
    for i in range(6):  # it flaps again right away: open again, for twice as long
        b.acquire()
        b.failure() if i % 2 else b.success()
    assert b.state == OPEN
    assert b.open_for == 2.0
    clock.t = 3.0
    assert b.acquire()
    b.success()
    clock.t = 20.0  # healthy for longer than max_open_s: the next opening starts at the base again
    b.failure()
    b.failure()
    assert b.state == OPEN
    assert b.open_for == 1.0


def test_breaker_rate_rule_ignores_a_healthy_replica_with_rare_failures():
    b = Breaker(failure_threshold=3, failure_rate=0.5, window=10, clock=Clock())
    for i in range(40):
        b.acquire()
        b.failure() if i % 5 == 0 else b.success()
    assert b.state == CLOSED


def test_breaker_probe_moves_open_to_half_open_only_after_the_wait():
    clock = Clock()
    b = Breaker(failure_threshold=3, open_s=1.0, clock=clock)
    b.trip()
    b.probe_ok()
    assert b.state == OPEN
    clock.t = 1.1
    b.probe_ok()
    assert b.state == HALF_OPEN
