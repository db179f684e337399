"""Carry an opened upstream stream to the client, and write down what the answer cost.

A streaming client gets the upstream's events re-encoded in its protocol as they arrive (or,
OpenAI client to OpenAI-compatible upstream, the upstream's chunks byte for byte); a
non-streaming client gets one body once the stream is complete, so a failure there can still
fall back. Either way the answer is accounted once: metrics, cost from usage, and one redacted
JSON log line.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentdeploy.serving import fallback as fb
from agentdeploy.serving.http1 import Request, Response, StreamResponse
from agentdeploy.serving.metrics import GatewayMetrics
from agentdeploy.serving.pricing import Usage, cost_usd
from agentdeploy.serving.protocol.events import ApiKind, Event, JsonObject
from agentdeploy.serving.protocol.writers import AnthropicStreamWriter, Collector, OpenAIStreamWriter, StreamWriter
from agentdeploy.serving.redact import Redactor
from agentdeploy.serving.replies import H_AGENT, H_COST, H_FALLBACK, H_MODEL, H_OVERHEAD, H_UPSTREAM
from agentdeploy.serving.runtime import Agent, Step
from agentdeploy.serving.upstreams import Target

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


@dataclass(slots=True)
class RequestContext:
    """One admitted client request, as the chain walk and delivery see it."""

    request: Request
    protocol: ApiKind
    body: JsonObject
    agent: Agent
    max_tokens: int
    #: Prompt tokens guessed from the body's size (budget reservation; usage when none is reported).
    est_prompt: int
    #: perf_counter() when the request arrived.
    t_in: float
    stream: bool
    #: `upstream:reason` for every chain entry passed over (the x-agentdeploy-fallback header).
    reasons: list[str] = field(default_factory=list)
    #: Seconds spent waiting on upstreams so far (attempts and retry waits): not gateway overhead.
    waited: float = 0.0
    #: What the answer cost, USD, once known (the budget settles to it).
    cost: float = 0.0


class Ledger:
    """Where every request is written down: the metrics, and one redacted JSON log line."""

    __slots__ = ("metrics", "redactor", "log_requests")

    def __init__(self, metrics: GatewayMetrics, redactor: Redactor, log_requests: bool) -> None:
        self.metrics = metrics
        self.redactor = redactor
        #: The config's `log_requests` (the gateway updates it on reload).
        self.log_requests = log_requests

    def log(self, record: dict[str, Any]) -> None:
        record["ts"] = round(time.time(), 3)
        request_log(self.redactor.bytes(orjson.dumps(record)))

    def charge(self, ctx: RequestContext, step: Step, usage: Usage) -> float:
        """Add what one upstream attempt billed to the request's cost (the budget settles to the
        sum over attempts) and to the token and cost metrics; returns that attempt's cost."""
        cost = cost_usd(usage, step.prices)
        ctx.cost += cost
        a, model = ctx.agent.name, step.model
        for kind, n in usage.as_dict().items():
            if n:
                self.metrics.tokens.inc((a, model, kind), n)
        if cost:
            self.metrics.cost.inc((a, model), cost)
        return cost

    def account(self, ctx: RequestContext, step: Step, usage: Usage, cost: float, status: int, ttft: float,
                total: float, overhead: float, stream_error: str = "") -> None:
        m = self.metrics
        a, u, model = ctx.agent.name, step.upstream.name, step.model
        m.requests.inc((a, u, model, status))
        m.ttft.observe((a, u), ttft)
        m.latency.observe((a, u), total)
        m.overhead.observe((a,), max(0.0, overhead))
        if self.log_requests:
            self.log({
                "agent": a, "upstream": u, "model": model, "status": status, "ttft_ms": round(ttft * 1000, 2),
                "total_ms": round(total * 1000, 2), "overhead_ms": round(overhead * 1000, 3), "fallback": ctx.reasons,
                "tokens": usage.as_dict(), "cost_usd": round(cost, 8), **({"stream_error": stream_error} if stream_error else {}),
            })

    def refused(self, agent: str, protocol: ApiKind, status: int, reason: str, t_in: float) -> None:
        """A request answered by the gateway itself (4xx/5xx before or instead of an upstream)."""
        self.metrics.requests.inc((agent, "", "", status))
        self.log({"agent": agent, "protocol": protocol, "status": status, "error": reason,
                  "total_ms": round((perf() - t_in) * 1000, 2)})


def billed(usage: Usage, est_prompt: int, max_tokens: int) -> Usage:
    """What an attempt is charged. With the upstream's closing usage: that. Without it (client
    gone, upstream cut, stall, error) the upstream may have generated more than reached the
    gateway, and it bills what it generated: so the input as reported at the start (or the
    estimate) and every output token the request allowed, never less than was reported."""
    if usage.final:
        return usage
    if not usage.reported:
        return Usage(input_tokens=est_prompt, output_tokens=max_tokens)
    return Usage(usage.input_tokens, max(usage.output_tokens, max_tokens), usage.cache_write_5m, usage.cache_write_1h,
                 usage.cache_read, reported=True)


async def deliver(ledger: Ledger, ctx: RequestContext, step: Step, target: Target,
                  opened: fb.Opened) -> Response | StreamResponse | fb.Failed:
    """Carry an opened upstream stream to the client (streaming) or into one body; a Failed
    only when a non-streaming answer broke (nothing was sent: the chain may move on)."""
    headers = {H_AGENT: ctx.agent.name, H_UPSTREAM: step.upstream.name, H_MODEL: step.model}
    if ctx.reasons:
        headers[H_FALLBACK] = ",".join(ctx.reasons)
    if ctx.stream:
        return await _stream(ledger, ctx, step, target, opened, headers)
    return await _collect(ledger, ctx, step, target, opened, headers)


async def _collect(ledger: Ledger, ctx: RequestContext, step: Step, target: Target, opened: fb.Opened,
                   headers: dict[str, str]) -> Response | fb.Failed:
    collector = Collector()

    async def collect(events: list[Event], raw: list[bytes]) -> None:
        for ev in events:
            collector.event(ev)

    res = await fb.pump(opened, step.upstream.stall_timeout, collect)
    usage = billed(opened.parser.usage, ctx.est_prompt, ctx.max_tokens)
    cost = ledger.charge(ctx, step, usage)
    if res.reason:
        ctx.waited += res.waited
        return fb.Failed(res.reason, error_type=res.error_type, message=res.message)
    opened.resp.release()
    target.breaker.success()
    if ctx.protocol == "openai":
        payload = collector.openai_body(step.model, usage)
    else:
        payload = collector.anthropic_body(step.model, usage)
    total = perf() - ctx.t_in
    overhead = total - ctx.waited - res.waited
    headers[H_OVERHEAD] = f"{overhead * 1000:.3f}"
    headers[H_COST] = f"{cost:.8f}"
    ledger.account(ctx, step, usage, cost, 200, total, total, overhead)
    return Response(body=orjson.dumps(payload), content_type="application/json", headers=headers)


async def _stream(ledger: Ledger, ctx: RequestContext, step: Step, target: Target, opened: fb.Opened,
                  headers: dict[str, str]) -> StreamResponse:
    up = step.upstream
    parser = opened.parser
    include_usage = ctx.protocol == "openai" and bool((ctx.body.get("stream_options") or {}).get("include_usage"))
    writer: StreamWriter
    if ctx.protocol == "openai":
        writer = OpenAIStreamWriter(step.model, include_usage)
    else:
        writer = AnthropicStreamWriter(step.model, ctx.est_prompt)
    t_commit = perf()
    overhead = t_commit - ctx.t_in - ctx.waited
    headers[H_OVERHEAD] = f"{overhead * 1000:.3f}"
    headers["content-type"] = "text/event-stream; charset=utf-8"
    headers["cache-control"] = "no-cache"
    resp = StreamResponse(headers=headers)
    ttft = perf() - ctx.t_in
    try:
        await resp.prepare(ctx.request)
        head = writer.head(parser.usage)
    except (ConnectionError, OSError):
        target.breaker.release()
        usage = billed(parser.usage, ctx.est_prompt, ctx.max_tokens)
        ledger.account(ctx, step, usage, ledger.charge(ctx, step, usage), 499, ttft, perf() - ctx.t_in, overhead)
        return resp
    # Same protocol both sides (OpenAI client, OpenAI-compatible upstream): forward the
    # upstream's chunks byte for byte once parsed and checked, instead of re-encoding them.
    passthrough = ctx.protocol == "openai" and up.kind == "openai"
    pieces = [] if passthrough else [head]

    async def send(events: list[Event], raw: list[bytes]) -> None:
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

    try:
        res = await fb.pump(opened, up.stall_timeout, send)
    except fb.ClientGone:
        target.breaker.release()
        usage = billed(parser.usage, ctx.est_prompt, ctx.max_tokens)
        ledger.account(ctx, step, usage, ledger.charge(ctx, step, usage), 499, ttft, perf() - ctx.t_in, overhead)
        return resp
    usage = billed(parser.usage, ctx.est_prompt, ctx.max_tokens)
    cost = ledger.charge(ctx, step, usage)
    try:
        if res.reason:
            # Bytes already went out: end with an explicit in-band error, never a clean end.
            target.breaker.failure()
            ledger.metrics.stream_errors.inc((ctx.agent.name, up.name, res.reason))
            ledger.metrics.errors.inc((ctx.agent.name, up.name, res.reason))
            kind = "api_error" if ctx.protocol == "anthropic" else "upstream_error"
            await resp.write(writer.error(kind, ledger.redactor.text(f"upstream {up.name} failed mid-stream ({res.reason}): {res.message}")))
        else:
            opened.resp.release()
            target.breaker.success()
            end = b"data: [DONE]\n\n" if passthrough else writer.end(usage)
            await resp.write_eof(end)  # one send: last events + chunked terminator
            ledger.account(ctx, step, usage, cost, 200, ttft, perf() - ctx.t_in, overhead)
            return resp
        await resp.write_eof()
    except (ConnectionError, OSError):
        pass
    status = 200 if not res.reason else 502
    ledger.account(ctx, step, usage, cost, status, ttft, perf() - ctx.t_in, overhead, res.reason)
    return resp
