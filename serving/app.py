"""The serving gateway: HTTP front end, the request path, and its lifecycle.

Request path (per request, no pydantic, no per-request allocation beyond the bodies):
authenticate -> pick agent -> max_tokens default/cap -> budget reservation -> walk the
agent's chain (skip entries with no healthy or an overloaded target at once; retry 429/529 on
the same upstream only while the wait fits the latency budget and the retry cap; move on for
connection errors, 5xx, TTFT timeouts, malformed or cut streams; return 4xx client errors)
-> stream or collect the answer in the client's protocol -> settle the budget to actual usage
-> metrics and one log line.

Lifecycle: SIGTERM stops accepting, /readyz turns 503, in-flight requests drain for up to
`drain_timeout_s`; SIGHUP reloads the config file (and replica files) without dropping
connections.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from agentdeploy.serving import fallback as fb
from agentdeploy.serving.auth import SHARED, presented_key
from agentdeploy.serving.budget import BudgetStoreUnavailable, MemoryBudgetStore, RedisBudgetStore, to_micro, window_key
from agentdeploy.serving.cache_control import place_breakpoints
from agentdeploy.serving.config import GatewayConfig, load_config
from agentdeploy.serving.http1 import Request, Response, Server, StreamResponse
from agentdeploy.serving.httpclient import Pool
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.pricing import Usage, cost_usd, worst_case_usd
from agentdeploy.serving.redact import Redactor
from agentdeploy.serving.runtime import Agent, Runtime, Step
from agentdeploy.serving.translate import (
    AnthropicStreamWriter,
    Collector,
    OpenAIStreamWriter,
    TranslationError,
    error_body,
    upstream_request,
)
from agentdeploy.serving.upstreams import poll_forever

log = logging.getLogger("agentdeploy.gateway")
perf = time.perf_counter


def _stderr_line(line: bytes) -> None:
    # One write per request line: the logging module's record/format/lock path costs more
    # than the rest of a request's gateway work.
    try:
        sys.stderr.buffer.write(line + b"\n")
        sys.stderr.buffer.flush()
    except (OSError, ValueError):
        pass


#: Where per-request JSON lines go (replaceable, e.g. by tests); lines are already redacted.
request_log = _stderr_line

H_MODEL = "x-agentdeploy-model"
H_UPSTREAM = "x-agentdeploy-upstream"
H_AGENT = "x-agentdeploy-agent"
H_FALLBACK = "x-agentdeploy-fallback"
H_OVERHEAD = "x-agentdeploy-overhead-ms"
H_COST = "x-agentdeploy-cost-usd"
H_ERROR = "x-agentdeploy-error"


#: The largest request body the gateway reads (long prompts with history fit well inside).
MAX_BODY_BYTES = 32 * 1024 * 1024


def _json(status: int, obj: dict, headers: dict | None = None) -> Response:
    return Response(status, body=orjson.dumps(obj), content_type="application/json", headers=headers)


class Gateway:
    def __init__(self, config: GatewayConfig, config_path: str | Path | None = None, environ: dict[str, str] | None = None) -> None:
        self.config_path = Path(config_path) if config_path else None
        self.environ = environ
        self.metrics = GatewayMetrics()
        self.redactor = Redactor()
        self.runtime = self._build(config, None)
        self.session: aiohttp.ClientSession | None = None  # health/metrics polling
        self.pool = Pool()  # the request path's upstream connections
        self.store = self._store(config)
        self.draining = False
        self.in_flight = 0
        self._pollers: list[asyncio.Task] = []
        self._cloudwatch: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._thresholds_seen: dict[str, int] = {}

    # ------------------------------------------------------------------ setup
    def _secrets(self, config: GatewayConfig) -> dict[str, str | None]:
        secrets = {name: (up.api_key.resolve(self.environ) if up.api_key else None) for name, up in config.upstreams.items()}
        self.redactor.add(v for v in secrets.values() if v)
        return secrets

    def _build(self, config: GatewayConfig, previous: Runtime | None) -> Runtime:
        return Runtime(config, self._secrets(config), previous)

    def _store(self, config: GatewayConfig):
        spec = config.budget_store
        if spec.backend == "redis" and spec.redis_url:
            url = spec.redis_url.resolve(self.environ)
            if url:
                self.redactor.add([url])
                return RedisBudgetStore(url)
        return MemoryBudgetStore()

    def build_server(self) -> Server:
        routes = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/messages"): self.messages,
            ("GET", "/v1/models"): self.models,
            ("GET", "/metrics"): self.metrics_endpoint,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
        }
        return Server(routes, MAX_BODY_BYTES, on_exception=lambda r: log.exception("unhandled error on %s %s", r.method, r.path))

    async def start(self) -> None:
        """Background parts: the health/metrics poll session, pollers, CloudWatch publisher."""
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        # No cookies: upstream cookies must never leak between agents, and the jar costs time per request.
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        self._start_pollers()
        interval = self.runtime.config.cloudwatch_interval_s
        if interval > 0:
            from agentdeploy.serving.cloudwatch import CloudWatchPublisher

            publisher = CloudWatchPublisher(self.metrics, self.runtime.config.stack, self._self_hosted_upstreams)
            self._cloudwatch = asyncio.ensure_future(publisher.run_forever(interval))

    def _self_hosted_upstreams(self) -> dict[str, str]:
        """GPU agent -> the self-hosted (OpenAI-kind) upstream at the head of its chain."""
        out = {}
        for name, agent in self.runtime.agents.items():
            if agent.chain and agent.chain[0].upstream.kind == "openai":
                out[name] = agent.chain[0].upstream.name
        return out

    def _start_pollers(self) -> None:
        for task in self._pollers:
            task.cancel()
        self._pollers = [
            asyncio.ensure_future(poll_forever(self.session, up))
            for up in self.runtime.upstreams.values()
            if up.kind == "openai" and up.spec.metrics_poll_s > 0
        ]

    async def stop(self) -> None:
        for task in self._pollers:
            task.cancel()
        if self._cloudwatch is not None:
            self._cloudwatch.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self.session:
            await self.session.close()
        self.pool.close()
        await self.store.close()

    def reload(self) -> bool:
        """Re-read the config file; keep serving with the old one if the new one is invalid."""
        if not self.config_path:
            return False
        from agentdeploy.errors import DeployError

        try:
            config = load_config(self.config_path)
            runtime = self._build(config, self.runtime)
        except DeployError as err:
            log.error("config reload rejected, keeping the running config: %s", err.render())
            return False
        self.runtime = runtime
        if self.session is not None:
            self._start_pollers()
        log.info("config reloaded from %s", self.config_path)
        return True

    def _spawn(self, coro) -> None:
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

    async def metrics_endpoint(self, request: Request) -> Response:
        m = self.metrics
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
        owner = rt.keys.lookup(presented_key(request.headers))
        if owner is None:
            return _json(401, error_body("openai", "authentication_error", "invalid or missing API key"))
        names = list(rt.agents) if owner == SHARED else [owner]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "agentdeploy"} for n in names]
        return _json(200, {"object": "list", "data": data})

    # ------------------------------------------------------------------ the request path
    async def chat_completions(self, request: Request) -> Response | StreamResponse:
        return await self.handle(request, "openai")

    async def messages(self, request: Request) -> Response | StreamResponse:
        return await self.handle(request, "anthropic")

    def _error(self, protocol: str, status: int, kind: str, message: str, headers: dict | None = None) -> Response:
        return _json(status, error_body(protocol, kind, self.redactor.text(message)), headers)

    async def handle(self, request: Request, protocol: str) -> Response | StreamResponse:
        t_in = perf()
        rt = self.runtime
        owner = rt.keys.lookup(presented_key(request.headers))
        if owner is None:
            return self._error(protocol, 401, "authentication_error", "invalid or missing API key")
        if self.draining:
            return self._error(protocol, 503, "overloaded_error" if protocol == "anthropic" else "service_unavailable", "gateway is shutting down", {"retry-after": "1"})
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._error(protocol, 400, "invalid_request_error", "request body must be a JSON object")
        wanted = body.get("model")
        if owner == SHARED:
            agent = rt.agents.get(wanted) if isinstance(wanted, str) else None
            if agent is None:
                return self._error(protocol, 400, "invalid_request_error", f"model must name an agent; known agents: {', '.join(sorted(rt.agents))}")
        else:
            if isinstance(wanted, str) and wanted in rt.agents and wanted != owner:
                return self._error(protocol, 403, "permission_error", f"this key is not valid for agent {wanted!r}")
            agent = rt.agents[owner]
        spec = agent.spec
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._error(protocol, 400, "invalid_request_error", "messages: a non-empty list is required")
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        if requested is None:
            max_tokens = spec.max_tokens_default
        elif not isinstance(requested, int) or requested < 1:
            return self._error(protocol, 400, "invalid_request_error", "max_tokens must be a positive integer")
        elif requested > spec.max_tokens_cap:
            if spec.over_cap == "reject":
                return self._error(protocol, 400, "invalid_request_error", f"max_tokens {requested} is above agent {agent.name!r}'s cap of {spec.max_tokens_cap}; send at most {spec.max_tokens_cap}")
            max_tokens = spec.max_tokens_cap
        else:
            max_tokens = requested
        est_prompt = request.content_length // 4 + 1 if request.content_length else 1000
        # ---- budget admission: reserve the worst case over every upstream this request may reach
        chain = agent.chain
        reserved = 0
        bkey = None
        degraded = False
        budget = spec.budget
        if budget is not None:
            bkey = window_key(rt.config.budget_store.key_prefix, rt.config.stack, agent.name)
            reserved = to_micro(worst_case_usd(est_prompt, max_tokens, agent.worst))
            try:
                ok = await self.store.reserve(bkey, reserved, agent.budget_limit_micro)
                if not ok and budget.policy == "degrade" and agent.degrade_chain:
                    reserved = to_micro(worst_case_usd(est_prompt, max_tokens, agent.degrade_worst))
                    ok = await self.store.reserve(bkey, reserved, agent.budget_limit_micro)
                    chain, degraded = agent.degrade_chain, ok
                    if ok:
                        self.metrics.budget_rejections.inc((agent.name, "degraded"))
            except BudgetStoreUnavailable as exc:
                # A budget that cannot be checked cannot hold: block and degrade fail closed; an
                # alert-only budget never blocks, so it admits unmetered and says so.
                self._log({"event": "budget_store_unavailable", "agent": agent.name, "policy": budget.policy, "error": str(exc)})
                self.metrics.budget_rejections.inc((agent.name, "store_unavailable"))
                if budget.policy != "alert":
                    self.metrics.requests.inc((agent.name, "", "", 503))
                    return self._error(protocol, 503, "overloaded_error" if protocol == "anthropic" else "budget_store_unavailable",
                                       f"agent {agent.name!r}'s budget cannot be checked (budget store unreachable); retry shortly",
                                       {H_ERROR: "budget_store_unavailable", "retry-after": "1"})
                ok, bkey, reserved = True, None, 0
            if not ok:
                self.metrics.budget_rejections.inc((agent.name, "blocked"))
                self.metrics.requests.inc((agent.name, "", "", 429))
                return self._error(protocol, 429, "budget_exceeded", f"agent {agent.name!r} has reached its budget of ${budget.monthly_usd:g} for this month", {H_ERROR: "budget_exceeded"})
        self.in_flight += 1
        outcome = _Outcome()
        try:
            return await self._run_chain(request, protocol, body, agent, chain, max_tokens, est_prompt, t_in, outcome, degraded)
        finally:
            self.in_flight -= 1
            if bkey is not None:
                self._spawn(self._settle(agent, bkey, reserved, to_micro(outcome.cost) if outcome.cost else 0))

    async def _settle(self, agent: Agent, key: str, reserved: int, actual: int) -> None:
        try:
            await self.store.settle(key, reserved, actual)
            committed = await self.store.committed(key)
        except BudgetStoreUnavailable as exc:
            # The reservation stays counted (over-, never under-counting); say what was lost.
            self._log({"event": "budget_settle_failed", "agent": agent.name, "reserved_usd": reserved / 1e6,
                       "actual_usd": actual / 1e6, "error": str(exc)})
            return
        budget = agent.spec.budget
        used_pct = 100.0 * committed / (budget.monthly_usd * 1e6)
        crossed = [t for t in budget.thresholds_pct if used_pct >= t]
        if crossed and max(crossed) > self._thresholds_seen.get(key, 0):
            self._thresholds_seen[key] = max(crossed)
            log.warning(orjson.dumps({"event": "budget_threshold", "agent": agent.name, "threshold_pct": max(crossed), "used_pct": round(used_pct, 1), "policy": budget.policy}).decode())

    async def _run_chain(self, request, protocol, body, agent: Agent, chain: list[Step], max_tokens: int, est_prompt: int, t_in: float, out: "_Outcome", degraded: bool) -> Response | StreamResponse:
        spec = agent.spec
        m = self.metrics
        deadline = t_in + spec.deadline_s if spec.deadline_s else None
        reasons: list[str] = []
        if degraded:
            reasons.append("budget:degraded")
        waited = 0.0
        retry_spent = 0.0
        payloads: dict[tuple[str, str], bytes] = {}
        last: fb.Failed | None = None
        need_context: int | None = None
        stream = bool(body.get("stream"))
        for i, step in enumerate(chain):
            up = step.upstream
            if need_context is not None and (step.context_tokens or 0) <= need_context:
                continue
            tries = 0
            last_resort = i == len(chain) - 1
            while True:
                target, why = up.pick(last_resort, step.ttft_timeout)
                if target is None:
                    last = fb.Failed(why, message=f"{up.name}: {why}")
                    break
                pkey = (up.kind, step.model)
                payload = payloads.get(pkey)
                if payload is None:
                    try:
                        req = upstream_request(protocol, up.kind, body, step.model, max_tokens)
                    except TranslationError as err:
                        target.breaker.release()
                        return self._error(protocol, 400, "invalid_request_error", str(err))
                    if up.kind == "anthropic" and spec.cache.enabled:
                        req = place_breakpoints(req, spec.cache.breakpoints, spec.cache.ttl, step.min_cacheable)
                    payload = payloads[pkey] = orjson.dumps(req)
                target.in_flight += 1
                t0 = perf()
                try:
                    res = await fb.open_attempt(self.pool, up, target, payload, step.ttft_timeout)
                finally:
                    waited += perf() - t0
                if isinstance(res, fb.Opened):
                    try:
                        result = await self._deliver(request, protocol, body, agent, step, target, res, stream, t_in, waited, reasons, est_prompt, out)
                    finally:
                        target.in_flight -= 1
                    if isinstance(result, fb.Failed):
                        # Only a non-streaming answer can fail here, before any byte was sent.
                        last = result
                        waited += out.waited
                        target.breaker.failure()
                        m.errors.inc((agent.name, up.name, result.reason))
                        break
                    return result
                target.in_flight -= 1
                last = res
                m.errors.inc((agent.name, up.name, res.reason))
                if res.reason in fb.HEALTH_FAILURES:
                    target.breaker.failure()
                else:
                    target.breaker.release()
                if res.reason in (fb.RATE_LIMITED, fb.OVERLOADED):
                    wait = fb.retry_wait(res, tries)
                    if fb.fits(wait, tries, spec.max_retries_per_upstream, retry_spent, spec.retry_max_total_s, deadline, perf()):
                        await asyncio.sleep(wait)
                        retry_spent += wait
                        waited += wait
                        tries += 1
                        continue
                    break
                if res.reason in fb.TERMINAL:
                    return self._upstream_error(protocol, agent, step, res)
                if res.reason == fb.CONTEXT_LENGTH:
                    need_context = step.context_tokens or 0
                break
            reasons.append(f"{up.name}:{last.reason}")
            m.fallbacks.inc((agent.name, up.name, last.reason))
        return self._exhausted(protocol, agent, last, reasons)

    def _upstream_error(self, protocol: str, agent: Agent, step: Step, res: fb.Failed) -> Response:
        self.metrics.requests.inc((agent.name, step.upstream.name, step.model, res.status or 400))
        kind = "content_filter" if res.reason == fb.CONTENT_FILTER else "invalid_request_error"
        return self._error(protocol, res.status or 400, kind, res.message or res.reason, {H_UPSTREAM: step.upstream.name, H_MODEL: step.model, H_ERROR: res.reason})

    def _exhausted(self, protocol: str, agent: Agent, last: fb.Failed | None, reasons: list[str]) -> Response:
        detail = "; ".join(reasons) or "no upstream configured"
        headers = {H_FALLBACK: ",".join(reasons)}
        if last is not None and last.reason == fb.CONTEXT_LENGTH:
            status, kind, msg = 400, "invalid_request_error", last.message
        elif last is not None and last.reason in (fb.RATE_LIMITED, fb.OVERLOADED):
            status = 429 if last.reason == fb.RATE_LIMITED else 529
            kind = "rate_limit_error" if status == 429 else "overloaded_error"
            msg = f"every upstream is rate limited or overloaded ({detail})"
            if last.retry_after is not None:
                headers["retry-after"] = f"{last.retry_after:g}"
            if protocol == "openai" and status == 529:
                status = 503
        elif last is not None and last.reason in (fb.TTFT, fb.STALL):
            status, kind, msg = 504, "timeout_error", f"no upstream answered in time ({detail})"
        else:
            status, kind, msg = 502, "api_error", f"no upstream could answer ({detail})"
        self.metrics.requests.inc((agent.name, "", "", status))
        self._log({"agent": agent.name, "status": status, "fallback": reasons})
        return self._error(protocol, status, kind, msg, headers)

    async def _deliver(self, request, protocol, body, agent: Agent, step: Step, target, opened: fb.Opened, stream: bool, t_in: float, waited: float, reasons: list[str], est_prompt: int, out: "_Outcome"):
        """Carry an opened upstream stream to the client (streaming) or into one body."""
        m = self.metrics
        up = step.upstream
        parser = opened.parser
        headers = {H_AGENT: agent.name, H_UPSTREAM: up.name, H_MODEL: step.model}
        if reasons:
            headers[H_FALLBACK] = ",".join(reasons)
        if not stream:
            collector = Collector()

            async def collect(events: list, raw: list) -> None:
                for ev in events:
                    collector.event(ev)

            res = await fb.pump(opened, up.stall_timeout, collect)
            out.waited = res.waited
            if res.reason:
                opened.resp.close()
                return fb.Failed(res.reason, error_type=res.error_type, message=res.message)
            opened.resp.release()
            target.breaker.success()
            usage = self._usage(parser.usage, res.chars, est_prompt)
            cost = cost_usd(usage, step.prices)
            out.cost = cost
            payload = collector.openai_body(step.model, usage) if protocol == "openai" else collector.anthropic_body(step.model, usage)
            total = perf() - t_in
            overhead = total - waited - res.waited
            headers[H_OVERHEAD] = f"{overhead * 1000:.3f}"
            headers[H_COST] = f"{cost:.8f}"
            self._account(agent, step, usage, cost, 200, total, total, overhead, reasons)
            return Response(body=orjson.dumps(payload), content_type="application/json", headers=headers)

        include_usage = protocol == "openai" and bool((body.get("stream_options") or {}).get("include_usage"))
        writer = OpenAIStreamWriter(step.model, include_usage) if protocol == "openai" else AnthropicStreamWriter(step.model, est_prompt)
        t_commit = perf()
        overhead = t_commit - t_in - waited
        headers[H_OVERHEAD] = f"{overhead * 1000:.3f}"
        headers["content-type"] = "text/event-stream; charset=utf-8"
        headers["cache-control"] = "no-cache"
        resp = StreamResponse(headers=headers)
        try:
            await resp.prepare(request)
            head = writer.head(parser.usage)
        except (ConnectionError, OSError):
            opened.resp.close()
            target.breaker.release()
            return resp
        # Same protocol both sides (OpenAI client, OpenAI-compatible upstream): forward the
        # upstream's chunks byte for byte once parsed and checked, instead of re-encoding them.
        passthrough = protocol == "openai" and up.kind == "openai"
        pieces = [] if passthrough else [head]

        async def send(events: list, raw: list) -> None:
            if passthrough:
                for data in raw:
                    if data == b"[DONE]" or (not include_usage and data.find(b'"choices":[]') >= 0):
                        continue
                    pieces.append(b"data: " + data + b"\n\n")
            else:
                for ev in events:
                    if ev[0] == "done":
                        continue
                    b = writer.event(ev)
                    if b:
                        pieces.append(b)
            if pieces:
                data = b"".join(pieces)
                pieces.clear()
                try:
                    await resp.write(data)
                except (ConnectionError, OSError) as exc:
                    raise fb.ClientGone() from exc

        ttft = perf() - t_in
        try:
            res = await fb.pump(opened, up.stall_timeout, send)
        except fb.ClientGone:
            opened.resp.close()
            target.breaker.release()
            usage = self._usage(parser.usage, 0, est_prompt)
            out.cost = cost_usd(usage, step.prices)
            self._account(agent, step, usage, out.cost, 499, ttft, perf() - t_in, overhead, reasons)
            return resp
        usage = self._usage(parser.usage, res.chars, est_prompt)
        cost = cost_usd(usage, step.prices)
        out.cost = cost
        try:
            if res.reason:
                # Bytes already went out: end with an explicit in-band error, never a clean end.
                opened.resp.close()
                target.breaker.failure()
                m.stream_errors.inc((agent.name, up.name, res.reason))
                m.errors.inc((agent.name, up.name, res.reason))
                kind = "api_error" if protocol == "anthropic" else "upstream_error"
                await resp.write(writer.error(kind, self.redactor.text(f"upstream {up.name} failed mid-stream ({res.reason}): {res.message}")))
            else:
                opened.resp.release()
                target.breaker.success()
                end = b"data: [DONE]\n\n" if passthrough else writer.end(usage)
                await resp.write_eof(end)  # one send: last events + chunked terminator
                self._account(agent, step, usage, cost, 200, ttft, perf() - t_in, overhead, reasons)
                return resp
            await resp.write_eof()
        except (ConnectionError, OSError):
            pass
        status = 200 if not res.reason else 502
        self._account(agent, step, usage, cost, status, ttft, perf() - t_in, overhead, reasons, res.reason)
        return resp

    @staticmethod
    def _usage(reported: Usage, chars: int, est_prompt: int) -> Usage:
        if reported.reported:
            return reported
        # The upstream never reported usage (cut stream): estimate, so spend is not under-counted.
        return Usage(input_tokens=est_prompt, output_tokens=(chars + 3) // 4)

    def _account(self, agent: Agent, step: Step, usage: Usage, cost: float, status: int, ttft: float, total: float, overhead: float, reasons: list[str], stream_error: str = "") -> None:
        m = self.metrics
        a, u, model = agent.name, step.upstream.name, step.model
        m.requests.inc((a, u, model, status))
        m.ttft.observe((a, u), ttft)
        m.latency.observe((a, u), total)
        m.overhead.observe((a,), max(0.0, overhead))
        for kind, n in usage.as_dict().items():
            if n:
                m.tokens.inc((a, model, kind), n)
        if cost:
            m.cost.inc((a, model), cost)
        if self.runtime.config.log_requests:
            self._log({
                "agent": a, "upstream": u, "model": model, "status": status, "ttft_ms": round(ttft * 1000, 2),
                "total_ms": round(total * 1000, 2), "overhead_ms": round(overhead * 1000, 3), "fallback": reasons,
                "tokens": usage.as_dict(), "cost_usd": round(cost, 8), **({"stream_error": stream_error} if stream_error else {}),
            })

    def _log(self, record: dict) -> None:
        record["ts"] = round(time.time(), 3)
        request_log(self.redactor.bytes(orjson.dumps(record)))


class _Outcome:
    __slots__ = ("cost", "waited")

    def __init__(self) -> None:
        self.cost = 0.0
        self.waited = 0.0


# ---------------------------------------------------------------------- running it


CLEANUP_GRACE_S = 0.25


async def run(config: GatewayConfig, config_path: str | Path | None, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    gateway = Gateway(config, config_path)
    server = gateway.build_server()
    await gateway.start()
    # Everything built so far lives as long as the process: keep the GC from rescanning it
    # on every collection (fewer and shorter pauses in the request path's tail latency).
    gc.collect()
    gc.freeze()
    await server.start(host, port)
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
    await gateway.stop()
    log.info(orjson.dumps({"event": "stopped", "unfinished": unfinished}).decode())
