"""The serving gateway: its routes and its lifecycle.

Request path: authenticate (from the headers, before the body is read: the server's gate) ->
check the body's shape (protocol/shapes.py; a wrong type is a 400 and nothing goes upstream) ->
pick agent -> max_tokens default/cap -> budget reservation (admission.py) ->
walk the agent's chain (chain.py: skip entries with no healthy or an overloaded target at once;
retry 429/529 on the same upstream only while the wait fits the latency budget and the retry
cap; move on for connection errors, 5xx, TTFT timeouts, malformed or cut streams; return 4xx
client errors) -> stream or collect the answer in the client's protocol (deliver.py) -> settle
the budget to what every attempt billed (in a `finally`) -> metrics and one log line, for
every request, refusals and failures of the gateway itself included.

Beside the requests: pollers (each replica's load and node health), fleet discovery (each GPU
node from AWS: discovery.py), the wake of a fleet a request found without a healthy node
(wake.py), and the CloudWatch publisher.

Lifecycle: SIGTERM stops accepting, /readyz turns 503, in-flight requests drain for up to
`drain_timeout_s`; SIGHUP reloads the config file (and replica files) without dropping
connections.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agentdeploy.errors import DeployError
from agentdeploy.naming import SHARED_KEY
from agentdeploy.serving.admission import Admission, BudgetHold, is_operator, owner_of
from agentdeploy.serving.batch.room import BATCH_PATHS, BatchRoom
from agentdeploy.serving.budget import (
    BudgetStore,
    BudgetStoreUnavailable,
    MemoryBudgetStore,
    RedisBudgetStore,
    to_micro,
    window_key,
)
from agentdeploy.serving.chain import ChainWalker
from agentdeploy.serving.config import GatewayConfig, load_config
from agentdeploy.serving.deliver import Ledger, RequestContext
from agentdeploy.serving.discovery import AwsFleetReader, discover_forever, first_reads, readers_for
from agentdeploy.serving.http1 import Handler, Headers, Limits, Request, Response, Server, StreamResponse
from agentdeploy.serving.httpclient import Pool
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.protocol.events import ApiKind
from agentdeploy.serving.redact import Redactor
from agentdeploy.serving.replies import Replies, json_reply
from agentdeploy.serving.runtime import Runtime
from agentdeploy.serving.upstreams import NO_HEALTHY, Upstream, poll_forever
from agentdeploy.serving.wake import FleetWaker, wakers_for

log = logging.getLogger("agentdeploy.gateway")
perf = time.perf_counter

#: The largest request body the gateway reads: the Messages API's own request limit (32 MB,
#: docs.claude.com "Request size limits", as of 2026-12), so nothing Claude takes is refused.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: The client API endpoints and their protocol (the gate checks their key before the body).
API_PATHS: dict[str, ApiKind] = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic", **BATCH_PATHS}


def _log_unhandled(request: Request) -> None:
    log.exception("unhandled error on %s %s", request.method, request.path)


class Gateway:
    """One gateway process: what every request shares (the runtime built from the config, the
    upstream pool, the budget store, metrics) and what runs beside them (pollers, CloudWatch)."""

    def __init__(self, config: GatewayConfig, config_path: str | Path | None = None, environ: dict[str, str] | None = None) -> None:
        self.config_path = Path(config_path) if config_path else None
        self.environ = environ
        self.metrics = GatewayMetrics()
        self.redactor = Redactor()
        self.runtime = self._build(config, None)
        self.session: aiohttp.ClientSession | None = None  # health/metrics polling
        self.pool = Pool()  # the request path's upstream connections
        self.pool.on_resend = self._resent
        self.store = self._store(config)
        self.replies = Replies(self.redactor)
        self.ledger = Ledger(self.metrics, self.redactor, config.log_requests)
        self.admission = Admission(self.store, self.ledger, self.replies)
        self.chain = ChainWalker(self.pool, self.ledger, self.replies, on_unmet=self._unmet)
        self.wakers: dict[str, FleetWaker] = {}
        self.readers: dict[str, AwsFleetReader] = {}
        self._fleet_control()
        self.batches = BatchRoom(self)  # /v1/messages/batches, /v1/files, /v1/batches
        self.draining = False
        self.in_flight = 0
        self._pollers: list[asyncio.Task[None]] = []
        self._cloudwatch: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ setup
    def _secrets(self, config: GatewayConfig) -> dict[str, str | None]:
        secrets = {name: (up.api_key.resolve(self.environ) if up.api_key else None) for name, up in config.upstreams.items()}
        self.redactor.add(v for v in secrets.values() if v)
        return secrets

    def _build(self, config: GatewayConfig, previous: Runtime | None) -> Runtime:
        return Runtime(config, self._secrets(config), previous)

    def _store(self, config: GatewayConfig) -> BudgetStore:
        spec = config.budget_store
        if spec.backend == "redis" and spec.redis_url:
            url = spec.redis_url.resolve(self.environ)
            if url:
                self.redactor.add([url])
                return RedisBudgetStore(url)
        return MemoryBudgetStore()

    def client_routes(self) -> dict[tuple[str, str], Handler]:
        """The client port: the APIs, health for the load balancer, /metrics for operator keys."""
        return {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/messages"): self.messages,
            ("GET", "/v1/models"): self.models,
            ("GET", "/metrics"): self.metrics_for_operator,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
        }

    def operator_routes(self) -> dict[tuple[str, str], Handler]:
        """The operator listener (config `operator.listen`, loopback by default): no key asked."""
        return {
            ("GET", "/metrics"): self.metrics_endpoint,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
        }

    def build_server(self) -> Server:
        limits = Limits(max_body=MAX_BODY_BYTES, **self.runtime.config.http.model_dump())
        return Server(self.batches.routes(self.client_routes()), limits, on_exception=_log_unhandled, gate=self.gate)

    def build_operator_server(self) -> Server | None:
        if self.runtime.config.operator.listen is None:
            return None
        return Server(self.operator_routes(), Limits(max_body=0, max_connections=64), on_exception=_log_unhandled)

    def gate(self, method: str, path: str, headers: Headers) -> Response | None:
        """Before a byte of the body is read: a request to the APIs without a valid key is
        answered 401 at once (an anonymous client cannot make the gateway buffer 32 MiB)."""
        protocol = API_PATHS.get(path)
        if protocol is None:
            # Only the APIs take a body: nobody makes the gateway buffer one on /healthz.
            if headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers:
                return Response(413, text="this endpoint takes no request body")
            return None
        if method != "POST" or owner_of(self.runtime, headers) is not None:
            return None
        self.ledger.refused("", protocol, 401, "invalid or missing API key", perf())
        return self.replies.error(protocol, 401, "authentication_error", "invalid or missing API key")

    async def start(self) -> None:
        """Background parts: the health/metrics poll session, pollers, CloudWatch publisher."""
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        # No cookies: upstream cookies must never leak between agents, and the jar costs time per request.
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        await first_reads(self.runtime.upstreams, self.readers, self.metrics)  # nodes known before requests
        self._start_pollers()
        await self.batches.start()  # follow the batches not settled yet (shared store: any replica's)
        interval = self.runtime.config.cloudwatch_interval_s
        if interval > 0:
            from agentdeploy.serving.cloudwatch import CloudWatchPublisher

            publisher = CloudWatchPublisher(self.metrics, self.runtime.config.stack, self._self_hosted_upstreams)
            self._cloudwatch = asyncio.ensure_future(publisher.run_forever(interval))

    def _resent(self, target: str, why: str) -> None:
        """A request went upstream twice (a reused connection died unanswered): say so."""
        self.metrics.resends.inc((target,))
        self.ledger.log({"event": "upstream_resend", "target": target, "error": why})

    def _self_hosted_upstreams(self) -> dict[str, str]:
        """GPU agent -> the self-hosted (OpenAI-kind) upstream at the head of its chain."""
        out: dict[str, str] = {}
        for name, agent in self.runtime.agents.items():
            if agent.chain and agent.chain[0].upstream.kind == "openai":
                out[name] = agent.chain[0].upstream.name
        return out

    def _fleet_control(self) -> None:
        """Wakers and discovery readers for the fleets of the current config (kept across a
        reload when their spec is unchanged: rate limits, AWS clients, known addresses)."""
        ups = self.runtime.upstreams.values()
        self.wakers = wakers_for({u.name: u.spec.wake for u in ups if u.spec.wake}, self.wakers, self.metrics)
        self.readers = readers_for(ups, self.readers)

    def _unmet(self, agent: str, up: Upstream, reason: str) -> None:
        """A request meant for a fleet that could not take it: counted (UnmetDemand), and a fleet
        without a healthy node is asked to wake (at most once per its interval, never waited for)."""
        self.metrics.unmet.inc((agent, up.name, reason))
        waker = self.wakers.get(up.name)
        if reason == NO_HEALTHY and waker is not None:
            waker.request()

    def _start_pollers(self) -> None:
        for task in self._pollers:
            task.cancel()
        session = self.session
        if session is None:
            return
        self._pollers = [
            asyncio.ensure_future(poll_forever(session, up))
            for up in self.runtime.upstreams.values()
            if up.kind == "openai" and up.spec.metrics_poll_s > 0
        ] + [
            asyncio.ensure_future(discover_forever(self.runtime.upstreams[name], reader, self.metrics))
            for name, reader in self.readers.items()
        ]

    async def stop(self) -> None:
        for task in self._pollers:
            task.cancel()
        if self._cloudwatch is not None:
            self._cloudwatch.cancel()
        for waker in self.wakers.values():
            if waker.task is not None:
                waker.task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self.session:
            await self.session.close()
        self.pool.close()
        await self.batches.close()
        await self.store.close()

    def reload(self) -> bool:
        """Re-read the config file; keep serving with the old one if the new one is invalid."""
        if not self.config_path:
            return False
        try:
            config = load_config(self.config_path)
            runtime = self._build(config, self.runtime)
        except DeployError as err:
            log.error("config reload rejected, keeping the running config: %s", err.render())
            return False
        self.runtime = runtime
        self.ledger.log_requests = config.log_requests
        self._fleet_control()
        if self.session is not None:
            self._start_pollers()
        log.info("config reloaded from %s", self.config_path)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ small endpoints
    async def healthz(self, request: Request) -> Response:
        return Response(text="ok")

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            return Response(503, text="draining")
        return Response(text="ready")

    async def metrics_for_operator(self, request: Request) -> Response:
        if not is_operator(self.runtime, request):
            return Response(401, text="an operator key is required for /metrics", headers={"www-authenticate": "Bearer"})
        return await self.metrics_endpoint(request)

    async def metrics_endpoint(self, request: Request) -> Response:
        if self._background:
            # Budget settlements of finished requests land first: the page then shows every
            # request that has ended, settled (a scraper, or a test, reads a settled state).
            await asyncio.wait(list(self._background), timeout=1.0)
        m = self.metrics
        for gauge in (m.circuit, m.queue, m.draining):
            gauge.values.clear()  # only the targets there are now: discovered nodes come and go
        for up in self.runtime.upstreams.values():
            for t in up.targets:
                state = t.breaker.state
                m.circuit.set((up.name, t.url), state)
                if up.kind == "openai":
                    m.queue.set((up.name, t.url), t.load)
                    if up.spec.node_health_port is not None:
                        m.draining.set((up.name, t.url), 0 if t.node_ok else 1)
        m.in_flight.set((), self.in_flight)
        rt = self.runtime
        for agent in rt.agents.values():
            b = agent.spec.budget
            if b:
                try:
                    committed = await self.store.committed(window_key(rt.config.budget_store.key_prefix, rt.config.stack, agent.name))
                except BudgetStoreUnavailable:
                    continue  # the gauge keeps its last value; /metrics itself must still answer
                m.budget_remaining.set((agent.name,), b.monthly_usd - committed / 1e6)
        return Response(body=self.redactor.bytes(m.render()), content_type="text/plain", charset="utf-8")

    async def models(self, request: Request) -> Response:
        rt = self.runtime
        owner = owner_of(rt, request.headers)
        if owner is None:
            self.ledger.refused("", "openai", 401, "invalid or missing API key", perf())
            return self.replies.error("openai", 401, "authentication_error", "invalid or missing API key")
        names = list(rt.agents) if owner == SHARED_KEY else [owner]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "agentdeploy"} for n in names]
        return json_reply(200, {"object": "list", "data": data})

    # ------------------------------------------------------------------ the request path
    async def chat_completions(self, request: Request) -> Response | StreamResponse:
        return await self.handle(request, "openai")

    async def messages(self, request: Request) -> Response | StreamResponse:
        return await self.handle(request, "anthropic")

    async def handle(self, request: Request, protocol: ApiKind) -> Response | StreamResponse:
        """One client request, written down (log line and metrics) on every way out; its budget
        reservation is settled whatever happens after it was made."""
        t_in = perf()
        rt = self.runtime
        owner = owner_of(rt, request.headers)
        if owner is None:
            self.ledger.refused("", protocol, 401, "invalid or missing API key", t_in)
            return self.replies.error(protocol, 401, "authentication_error", "invalid or missing API key")
        if self.draining:
            self.ledger.refused(owner, protocol, 503, "draining", t_in)
            return self.replies.error(protocol, 503, "overloaded_error" if protocol == "anthropic" else "service_unavailable",
                                      "gateway is shutting down", {"retry-after": "1"})
        hold: BudgetHold | None = None
        ctx: RequestContext | None = None
        self.in_flight += 1
        try:
            admitted = await self.admission.admit(rt, request, protocol, owner, t_in)
            if isinstance(admitted, Response):
                return admitted
            ctx, hold = admitted.ctx, admitted.hold
            return await self.chain.run(ctx, admitted.chain)
        except Exception as exc:
            agent = ctx.agent.name if ctx is not None else owner
            log.exception("unhandled error on %s for agent %s", request.path, agent)
            self.ledger.refused(agent, protocol, 500, f"internal error: {type(exc).__name__}", t_in)
            if request.responding:
                raise  # mid-stream: the server cuts the body (never a clean end)
            return self.replies.error(protocol, 500, "api_error", "internal error in the gateway")
        finally:
            self.in_flight -= 1
            if hold is not None:
                cost = ctx.cost if ctx is not None else 0.0
                self._spawn(self.admission.settle(hold, to_micro(cost) if cost else 0))


# ---------------------------------------------------------------------- running it


CLEANUP_GRACE_S = 0.25


async def run(config: GatewayConfig, config_path: str | Path | None, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    gateway = Gateway(config, config_path)
    server = gateway.build_server()
    operator = gateway.build_operator_server()
    await gateway.start()
    # Everything built so far lives as long as the process: keep the GC from rescanning it
    # on every collection (fewer and shorter pauses in the request path's tail latency).
    gc.collect()
    gc.freeze()
    await server.start(host, port)
    if operator is not None and config.operator.listen is not None:
        await operator.start(config.operator.listen.host, config.operator.listen.port)
        log.info(orjson.dumps({"event": "operator_listening", "host": config.operator.listen.host, "port": config.operator.listen.port}).decode())
    log.info(orjson.dumps({"event": "listening", "host": host, "port": port, "agents": sorted(config.agents)}).decode())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    if ready is not None:
        ready.set()
    await stop.wait()
    gateway.draining = True
    log.info(orjson.dumps({"event": "draining", "in_flight": gateway.in_flight, "timeout_s": config.drain_timeout_s}).decode())
    # Stop accepting, then let in-flight requests finish (bounded by drain_timeout_s).
    await server.stop_accepting()
    deadline = loop.time() + config.drain_timeout_s
    while gateway.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    unfinished = gateway.in_flight  # counted before the close cancels them
    # The drain above was the wait for in-flight requests; the close only grants a short grace
    # before cancelling what is left, so shutdown takes drain_timeout_s, not twice that.
    await server.close(CLEANUP_GRACE_S)
    if operator is not None:
        await operator.stop_accepting()
        await operator.close(0)
    await gateway.stop()
    log.info(orjson.dumps({"event": "stopped", "unfinished": unfinished}).decode())
