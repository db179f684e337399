"""Upstream targets at run time: replicas, their health, load, and the choice among them.

An OpenAI-compatible upstream (vLLM) has replicas; each carries a circuit breaker, the
requests this gateway has in flight to it, and the load its own `/metrics` reports
(`vllm:num_requests_running` + `vllm:num_requests_waiting`). A poller reads those every
`metrics_poll_s`, which doubles as the health probe (together with the node agent's /healthz
when `node_health_port` is set), and re-reads `replicas_file`; a fleet's nodes found in AWS
(discovery.py) join the static and file replicas as targets of their own. The pick is the healthy replica
with the least load. A replica counts as overloaded when its load has reached
`max_load_per_replica`, or when its queue over its measured finish rate would outlast the chain
entry's first-token budget. A draining node is skipped, and an upstream with no healthy replica
is skipped at once (scaled to zero, still warming).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import aiohttp

from agentdeploy.serving.breaker import Breaker
from agentdeploy.serving.config import BreakerSpec, UpstreamSpec
from agentdeploy.serving.httpclient import Endpoint
from agentdeploy.serving.prometheus import sum_samples

log = logging.getLogger("agentdeploy.gateway")

NO_HEALTHY = "no_healthy_replica"
OVERLOAD = "overload"


class Target:
    __slots__ = ("url", "ep", "breaker", "in_flight", "remote_load", "waiting", "finish_rate", "_finished", "node_ok", "polled")

    def __init__(self, url: str, path: str, breaker: Breaker, headers: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        #: URL parsed and request head encoded once, not per request.
        self.ep = Endpoint(self.url + path, headers)
        self.breaker = breaker
        self.in_flight = 0
        self.remote_load = 0.0
        #: Requests queued on the replica (vllm:num_requests_waiting) at the last poll.
        self.waiting = 0.0
        #: Requests the replica finishes per second (smoothed rate of vllm:request_success_total).
        self.finish_rate = 0.0
        self._finished: tuple[float, float] | None = None  # (poll time, counter) of the last poll
        #: False while the node agent's /healthz says 503 (draining): no new requests at all. Not a
        #: breaker state: an open breaker lapses into a trial request by design; a drain must not.
        self.node_ok = True
        self.polled = False

    @property
    def load(self) -> float:
        # The replica's own view lags by up to one poll; ours is exact for our own requests.
        return max(float(self.in_flight), self.remote_load)

    def observe(self, load: VllmLoad, now: float, max_gap_s: float = float("inf")) -> None:
        """Take one /metrics reading: load, queue, and the finish rate since the last reading.

        The rate is updated only over intervals the replica was busy through (work running or
        queued at both readings) and that are no longer than `max_gap_s`: finishing nothing
        while idle, or across an outage the polls could not see into (a frozen or restarting
        server), says nothing about how fast it drains a queue once it serves again.
        """
        busy_before = self.remote_load > 0
        self.remote_load, self.waiting = load.running + load.waiting, load.waiting
        if load.finished is None:
            return
        last = self._finished
        if (last is not None and busy_before and self.remote_load > 0 and 0 < now - last[0] <= max_gap_s
                and load.finished >= last[1]):
            rate = (load.finished - last[1]) / (now - last[0])
            self.finish_rate = rate if self.finish_rate == 0 else 0.5 * self.finish_rate + 0.5 * rate
        self._finished = (now, load.finished)

    def predicted_wait_s(self) -> float:
        """How long a new request would queue before the replica starts it: the queue ahead of it
        over the rate the replica drains it. 0 with no queue; unknown (no rate yet) counts as 0,
        so the static max_load_per_replica cap still guards a replica never seen finishing."""
        if self.waiting <= 0 or self.finish_rate <= 0:
            return 0.0
        return (self.waiting + 1) / self.finish_rate


class Upstream:
    """One configured upstream and its targets."""

    def __init__(self, name: str, spec: UpstreamSpec, breaker_spec: BreakerSpec, api_key: str | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.spec = spec
        self.kind = spec.kind
        #: The upstream's own breaker settings (per agent, from the plan) win over the global ones.
        self.breaker_spec = spec.breaker or breaker_spec
        self.clock = clock
        self.path = "/v1/messages" if spec.kind == "anthropic" else "/v1/chat/completions"
        self.headers = {"content-type": "application/json"}
        if spec.kind == "anthropic":
            self.headers["anthropic-version"] = spec.anthropic_version
            if api_key:
                self.headers["x-api-key"] = api_key
        elif api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self.connect_timeout = spec.connect_timeout_s
        self.stall_timeout = spec.stall_timeout_s
        self.max_load = spec.max_load_per_replica
        self.targets: list[Target] = []
        self._file_mtime: float | None = None
        self._file_urls: list[str] = []
        #: The fleet's nodes as discovery last found them (serving/discovery.py).
        self.discovered: list[str] = []
        self.set_urls(self._static_urls())
        self.read_replicas_file()

    def all_urls(self) -> list[str]:
        return self._static_urls() + self._file_urls + self.discovered

    def set_discovered(self, urls: list[str]) -> bool:
        """Take discovery's node list; True when it changed. A node no longer listed keeps
        its in-flight requests (they hold the Target) but gets no new ones."""
        if urls == self.discovered:
            return False
        self.discovered = list(urls)
        self.set_urls(self.all_urls())
        return True

    def adopt(self, old: Upstream) -> None:
        """After a reload: keep the previous runtime's targets (breakers, load) and, for the
        same discovery, the nodes it found (the next refresh corrects them)."""
        if self.spec.discovery is not None and self.spec.discovery == old.spec.discovery:
            self.discovered = list(old.discovered)
        self.set_urls(self.all_urls(), keep={t.url: t for t in old.targets})

    def _static_urls(self) -> list[str]:
        urls = list(self.spec.replicas)
        if self.spec.base_url and self.spec.base_url not in urls:
            urls.insert(0, self.spec.base_url)
        return urls

    def set_urls(self, urls: list[str], keep: dict[str, Target] | None = None) -> None:
        """Replace the target list, keeping the state (breaker, load) of URLs already known."""
        known = {t.url: t for t in self.targets}
        if keep:
            known.update(keep)
        targets = []
        seen = set()
        for url in urls:
            url = url.rstrip("/")
            if url in seen:
                continue
            seen.add(url)
            t = known.get(url)
            if t is None:
                b = self.breaker_spec
                t = Target(url, self.path, Breaker(b.failure_threshold, b.open_s, b.max_open_s, b.failure_rate, b.window,
                                                   clock=self.clock), self.headers)
            else:
                t.ep = Endpoint(t.url + self.path, self.headers)  # a reload may have changed the key
            targets.append(t)
        self.targets = targets

    def read_replicas_file(self) -> bool:
        """Re-read `replicas_file` when its mtime changed; True when the target list changed."""
        path = self.spec.replicas_file
        if not path:
            return False
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = None
        if mtime == self._file_mtime:
            return False
        self._file_mtime = mtime
        urls: list[str] = []
        if mtime is not None:
            try:
                with open(path) as fh:
                    urls = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
            except OSError:
                urls = []
        self._file_urls = urls
        self.set_urls(self.all_urls())
        log.info("replicas of %s now %s", self.name, [t.url for t in self.targets])
        return True

    def pick(self, last_resort: bool = False, wait_budget_s: float | None = None,
             exclude: Collection[Target] = ()) -> tuple[Target | None, str]:
        """The least-loaded target that may take a request, else (None, reason).

        `wait_budget_s`: how long this request can afford to queue (the chain entry's first-token
        allowance); a replica whose predicted queue wait exceeds it is overloaded for this
        request — sending it there would only burn the budget and then fall back anyway.
        `last_resort`: nothing comes after this upstream in the chain, so skipping it would only
        turn a possible answer into a certain error: take the least-loaded target regardless.
        `exclude`: targets this request already saw fail (a continuation goes elsewhere).
        """
        if last_resort:
            if not self.targets:
                return None, NO_HEALTHY
            anyway = min(self.targets, key=lambda t: (not t.node_ok, not t.breaker.available(), t.load))
            anyway.breaker.acquire()
            return anyway, ""
        best: Target | None = None
        overloaded = False
        for t in self.targets:
            if not t.node_ok or not t.breaker.available() or t in exclude:
                continue
            if (self.max_load is not None and t.load >= self.max_load) or (
                    wait_budget_s is not None and t.predicted_wait_s() > wait_budget_s):
                overloaded = True
                continue
            if best is None or t.load < best.load:
                best = t
        if best is None:
            return None, OVERLOAD if overloaded else NO_HEALTHY
        if not best.breaker.acquire():
            return None, NO_HEALTHY
        return best, ""


@dataclass(frozen=True, slots=True)
class VllmLoad:
    running: float = 0.0
    waiting: float = 0.0
    #: vllm:request_success_total over every finish reason; None when the server has no such counter.
    finished: float | None = None


RUNNING, WAITING, FINISHED = "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:request_success_total"


def parse_vllm_metrics(text: str) -> VllmLoad:
    """Load, queue and finished-request count from vLLM's Prometheus text (summed over label sets)."""
    sums = sum_samples(text, (RUNNING, WAITING, FINISHED))
    return VllmLoad(sums.get(RUNNING, 0.0), sums.get(WAITING, 0.0), sums.get(FINISHED))


def node_health_url(replica_url: str, port: int) -> str:
    """The node agent's /healthz on the replica's own host."""
    parts = urlsplit(replica_url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}/healthz"


async def node_ready(session: aiohttp.ClientSession, up: Upstream, target: Target, timeout: aiohttp.ClientTimeout) -> bool:
    """Whether the node agent lets the replica take new work; no agent configured: yes."""
    port = up.spec.node_health_port
    if port is None:
        return True
    try:
        async with session.get(node_health_url(target.url, port), timeout=timeout) as resp:
            return resp.status == 200
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False


#: What one health probe saw: metrics read; alive without a /metrics endpoint (404: an
#: OpenAI-compatible server that is not vLLM); not ready (another status: warming, dying);
#: refused (nothing listens); failed (timeout, reset); draining (the node agent said 503).
ProbeOutcome = Literal["metrics", "alive", "not_ready", "refused", "failed", "draining"]


async def probe(session: aiohttp.ClientSession, up: Upstream, target: Target) -> tuple[ProbeOutcome, VllmLoad | None]:
    """One health probe of a target (the node agent's /healthz, then the replica's /metrics)."""
    timeout = aiohttp.ClientTimeout(total=max(1.0, up.spec.metrics_poll_s * 2), sock_connect=up.connect_timeout)
    if not await node_ready(session, up, target, timeout):
        return "draining", None
    try:
        async with session.get(target.url + "/metrics", timeout=timeout, headers={k: v for k, v in up.headers.items() if k == "authorization"}) as resp:
            if resp.status == 200:
                return "metrics", parse_vllm_metrics(await resp.text())
            return ("alive" if resp.status == 404 else "not_ready"), None
    except (aiohttp.ClientConnectorError, ConnectionRefusedError):
        return "refused", None
    except (TimeoutError, aiohttp.ClientError, OSError):
        return "failed", None


def apply_probe(up: Upstream, target: Target, outcome: ProbeOutcome, load: VllmLoad | None) -> None:
    """What a probe means for the target (pure but for the target's state; the clock is the upstream's)."""
    target.polled = True
    # Draining (spot notice, scale-in) or its agent is gone: no new requests until it says 200
    # again; those already in flight finish. Not a failure, so the breaker is untouched.
    target.node_ok = outcome != "draining"
    if outcome == "metrics" and load is not None:
        # A longer gap between good readings spans an outage: no rate from it (see observe).
        target.observe(load, up.clock(), max_gap_s=3 * up.spec.metrics_poll_s + 1.0)
        target.breaker.probe_ok()
    elif outcome == "alive":
        # It answers HTTP but has no metrics: alive; one trial request decides whether it serves.
        target.breaker.probe_ok()
    elif outcome in ("refused", "not_ready"):
        # Nothing listens, or 503 while the engine dies or warms up: out now, and kept out
        # (the wait restarts) while probes keep saying so — no trial request is wasted on it.
        target.breaker.trip()
    elif outcome == "failed":
        target.breaker.failure()


async def poll_once(session: aiohttp.ClientSession, up: Upstream, target: Target) -> None:
    outcome, load = await probe(session, up, target)
    apply_probe(up, target, outcome, load)


async def poll_forever(session: aiohttp.ClientSession, up: Upstream) -> None:
    interval = up.spec.metrics_poll_s
    while True:
        up.read_replicas_file()
        if up.targets:
            await asyncio.gather(*(poll_once(session, up, t) for t in list(up.targets)), return_exceptions=True)
        await asyncio.sleep(interval)
