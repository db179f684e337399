"""serving/upstreams.py: replica load and finish rate from /metrics, and the pick among replicas."""

import pytest

from agentdeploy.serving.breaker import Breaker
from agentdeploy.serving.config import BreakerSpec, UpstreamSpec
from agentdeploy.serving.upstreams import (
    NO_HEALTHY,
    OVERLOAD,
    Target,
    Upstream,
    VllmLoad,
    node_health_url,
    parse_vllm_metrics,
)


def test_parse_vllm_metrics_sums_each_series_over_its_labels():
    text = ('# HELP x\nvllm:num_requests_running{model_name="m"} 3.0\nvllm:num_requests_waiting{model_name="m"} 4.0\n'
            'vllm:num_requests_waiting_by_reason 9\nvllm:request_success_total{finished_reason="stop"} 10.0\n'
            'vllm:request_success_total{finished_reason="length"} 5.0\nvllm:request_success_created 1.7e9\n')
    assert parse_vllm_metrics(text) == VllmLoad(running=3.0, waiting=4.0, finished=15.0)
    assert parse_vllm_metrics("vllm:num_requests_running 1\n").finished is None  # no counter: rate unknown


def _target() -> Target:
    return Target("http://r1:8000", "/v1/chat/completions", Breaker(), {})


def test_predicted_wait_is_the_queue_over_the_measured_finish_rate():
    t = _target()
    t.observe(VllmLoad(running=4, waiting=9, finished=100), now=10.0)
    assert t.finish_rate == 0
    assert t.predicted_wait_s() == 0  # one reading: no rate yet
    t.observe(VllmLoad(running=4, waiting=9, finished=120), now=12.0)  # 10 finished per second
    assert t.finish_rate == pytest.approx(10.0)
    assert t.predicted_wait_s() == pytest.approx(1.0)  # 9 ahead + itself
    t.observe(VllmLoad(running=4, waiting=9, finished=120), now=14.0)  # nothing finished: draining slower
    assert t.finish_rate == pytest.approx(5.0)
    assert t.predicted_wait_s() == pytest.approx(2.0)
    t.observe(VllmLoad(running=2, waiting=0, finished=125), now=15.0)
    assert t.predicted_wait_s() == 0
    assert t.load == 2
    t.observe(VllmLoad(running=1, waiting=3, finished=3), now=16.0)  # restarted: counter went back, rate kept
    assert t.finish_rate == pytest.approx(5.0)
    t.observe(VllmLoad(running=0, waiting=0, finished=3), now=17.0)
    t.observe(VllmLoad(running=0, waiting=0, finished=3), now=600.0)  # idle ten minutes: no evidence
    t.observe(VllmLoad(running=1, waiting=2, finished=3), now=601.0)  # a burst arrives
    assert t.finish_rate == pytest.approx(5.0)
    assert t.predicted_wait_s() == pytest.approx(0.6)


def test_a_rate_measured_across_an_outage_is_not_kept():
    """Frozen for 6 s, one request finished: that is no measure of how fast it drains a queue."""
    t = _target()
    t.observe(VllmLoad(running=2, waiting=1, finished=0), now=0.0, max_gap_s=1.6)
    t.observe(VllmLoad(running=2, waiting=1, finished=4), now=0.2, max_gap_s=1.6)  # 20/s
    t.observe(VllmLoad(running=2, waiting=1, finished=5), now=6.2, max_gap_s=1.6)  # the polls could not see in
    assert t.finish_rate == pytest.approx(20.0)
    assert t.predicted_wait_s() == pytest.approx(0.1)


def test_pick_skips_a_replica_whose_queue_would_eat_the_first_token_budget():
    spec = UpstreamSpec(kind="openai", replicas=["http://r1:8000", "http://r2:8000"])
    up = Upstream("vllm", spec, BreakerSpec(), None)
    busy, idle = up.targets
    for t, waiting in ((busy, 30), (idle, 1)):
        t.observe(VllmLoad(running=1, waiting=waiting, finished=0), now=0.0)
        t.observe(VllmLoad(running=1, waiting=waiting, finished=10), now=1.0)  # 10/s each
    busy.in_flight = 0
    idle.in_flight = 5  # our own count makes `idle` look busier by load, yet its queue is short
    assert up.pick(wait_budget_s=1.0)[0] is idle  # busy: 31 / 10 = 3.1 s of queue > 1 s
    idle.breaker = Breaker()
    idle.observe(VllmLoad(running=1, waiting=50, finished=20), now=2.0)
    assert up.pick(wait_budget_s=1.0) == (None, OVERLOAD)
    assert up.pick(wait_budget_s=10.0)[0] is not None  # a patient entry still goes there
    assert up.pick(last_resort=True, wait_budget_s=1.0)[0] is not None  # nothing after it: try anyway


def test_a_draining_node_gets_nothing_even_when_its_breaker_would_allow_a_trial():
    spec = UpstreamSpec(kind="openai", replicas=["http://r1:8000", "http://r2:8000"], node_health_port=8081)
    up = Upstream("vllm", spec, BreakerSpec(), None)
    draining, other = up.targets
    draining.node_ok = False
    draining.in_flight, other.in_flight = 0, 3  # the draining one looks idlest
    assert up.pick()[0] is other
    other.node_ok = False
    assert up.pick() == (None, NO_HEALTHY)
    other.node_ok = True
    other.breaker.trip()
    assert up.pick(last_resort=True)[0] is other  # nothing after it: a non-draining node first


def test_node_health_url_is_the_replicas_own_host_on_the_agent_port():
    assert node_health_url("http://10.0.3.7:8000", 8081) == "http://10.0.3.7:8081/healthz"
    assert node_health_url("http://[fd00::7]:8000/", 8081) == "http://[fd00::7]:8081/healthz"
    assert node_health_url("https://gpu-1.internal", 9000) == "https://gpu-1.internal:9000/healthz"
