"""Carry an opened upstream stream to the client, and write down what the answer cost.

A streaming client gets the upstream's events re-encoded in its protocol as they arrive (or,
OpenAI client to OpenAI-compatible upstream, the upstream's chunks byte for byte); a
non-streaming client gets one body once the stream is complete, so a failure there can still
fall back. Either way the answer is accounted once: metrics, cost from usage, and one redacted
JSON log line.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentdeploy.serving import fallback as fb
from agentdeploy.serving.continuation import ChunkRestamper, Replay, ReplayMismatch, Sent, refusal, summed
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
                total: float, overhead: float, stream_error: str = "", continued: list[str] | None = None) -> None:
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
                **({"continued": continued} if continued else {}),
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


#: Opens a continuation of a broken stream on another target: (target, its opened stream), or
#: why it cannot (see serving/continuation.py; the chain supplies it).
Resume = Callable[[Sent], Awaitable[tuple[Target, fb.Opened, Replay | None] | str]]


async def deliver(ledger: Ledger, ctx: RequestContext, step: Step, target: Target,
                  opened: fb.Opened, resume: Resume | None = None) -> Response | StreamResponse | fb.Failed:
    """Carry an opened upstream stream to the client (streaming) or into one body; a Failed
    only when a non-streaming answer broke (nothing was sent: the chain may move on)."""
    headers = {H_AGENT: ctx.agent.name, H_UPSTREAM: step.upstream.name, H_MODEL: step.model}
    if ctx.reasons:
        headers[H_FALLBACK] = ",".join(ctx.reasons)
    if ctx.stream:
        return await _stream(ledger, ctx, step, target, opened, headers, resume)
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
                  headers: dict[str, str], resume: Resume | None) -> StreamResponse:
    up = step.upstream
    parser = opened.parser
    include_usage = ctx.protocol == "openai" and bool((ctx.body.get("stream_options") or {}).get("include_usage"))
    writer: StreamWriter
    if ctx.protocol == "openai":
        writer = OpenAIStreamWriter(step.model, include_usage)
    else:
        writer = AnthropicStreamWriter(step.model, ctx.est_prompt)
    t_commit = perf()
    cost0 = ctx.cost  # what earlier attempts cost: this answer's cost is what is charged from here
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
    out = _Out(resp, writer, passthrough, include_usage, [] if passthrough else [head])
    try:
        res = await fb.pump(opened, up.stall_timeout, out.send)
    except fb.ClientGone:
        target.breaker.release()
        usage = billed(parser.usage, ctx.est_prompt, ctx.max_tokens)
        ledger.account(ctx, step, usage, ledger.charge(ctx, step, usage), 499, ttft, perf() - ctx.t_in, overhead)
        return resp
    usage = billed(parser.usage, ctx.est_prompt, ctx.max_tokens)
    ledger.charge(ctx, step, usage)
    broke, why_not = res, ""
    if res.reason:
        opened.resp.close()  # stop the broken upstream before asking another one
        target.breaker.failure()
        ledger.metrics.stream_errors.inc((ctx.agent.name, up.name, res.reason))
        ledger.metrics.errors.inc((ctx.agent.name, up.name, res.reason))
        try:
            res, usage, why_not = await _continue(ledger, ctx, step, opened, out, res, parser.usage.input_tokens, resume)
        except fb.ClientGone:
            ledger.account(ctx, step, usage, ctx.cost - cost0, 499, ttft, perf() - ctx.t_in, overhead, broke.reason, out.continued)
            return resp
    else:
        opened.resp.release()
        target.breaker.success()
    try:
        if res.reason:
            # Bytes already went out: end with an explicit in-band error naming the real failure
            # (the break, not why it could not be continued), never a clean end.
            kind = "api_error" if ctx.protocol == "anthropic" else "upstream_error"
            detail = f"upstream {up.name} failed mid-stream ({broke.reason}): {broke.message}"
            if why_not:
                detail += f"; not continued: {why_not}"
            await resp.write(writer.error(kind, ledger.redactor.text(detail)))
        else:
            end = b"data: [DONE]\n\n" if passthrough else writer.end(usage)
            await resp.write_eof(end)  # one send: last events + chunked terminator
            ledger.account(ctx, step, usage, ctx.cost - cost0, 200, ttft, perf() - ctx.t_in, overhead,
                           continued=out.continued)
            return resp
        await resp.write_eof()
    except (ConnectionError, OSError):
        pass
    status = 200 if not res.reason else 502
    ledger.account(ctx, step, usage, ctx.cost - cost0, status, ttft, perf() - ctx.t_in, overhead, broke.reason, out.continued)
    return resp


class _Out:
    """The client's side of a stream: what has been sent (for a continuation) and how the next
    events are written — re-encoded, passed through, or (a continuation passed through)
    re-stamped with the first part's id."""

    def __init__(self, resp: StreamResponse, writer: StreamWriter, passthrough: bool, include_usage: bool,
                 pieces: list[bytes]) -> None:
        self.resp, self.writer, self.passthrough, self.include_usage = resp, writer, passthrough, include_usage
        self.pieces = pieces
        self.sent = Sent()
        self.restamp: ChunkRestamper | None = None
        #: The replay being verified against the text sent (temperature 0), while it runs.
        self.replay: Replay | None = None
        #: The same check for the raw chunks passed through (each path consumes its own copy).
        self.raw_replay: Replay | None = None
        #: The answer's usage while a continuation runs (its usage chunk is rewritten to it).
        self.usage: Callable[[], Usage] | None = None
        #: Upstream reasons of the breaks a continuation carried over (the log line's `continued`).
        self.continued: list[str] = []

    async def send(self, events: list[Event], raw: list[bytes]) -> None:
        if self.replay is not None:
            events = self._verified(events, self.replay)
        self.sent.see(events)
        pieces = self.pieces
        if self.passthrough:
            for data in raw:
                if data == b"[DONE]" or (not self.include_usage and data.find(b'"choices":[]') >= 0):
                    continue
                if self.restamp is not None:
                    stamped = self.restamp.chunk(data, self.usage() if self.usage else None, self.raw_replay)
                    if stamped is None:
                        continue
                    data = stamped
                pieces.append(b"data: " + data + b"\n\n")
        else:
            for ev in events:
                if ev[0] == "done" or (ev[0] == "start" and self.restamp is not None):
                    continue
                b = self.writer.event(ev)
                if b:
                    pieces.append(b)
        if pieces:
            data = b"".join(pieces)
            pieces.clear()
            try:
                await self.resp.write(data)
            except (ConnectionError, OSError) as exc:
                raise fb.ClientGone() from exc


    @staticmethod
    def _verified(events: list[Event], replay: Replay) -> list[Event]:
        """The replay's events past the text the client already holds (checked on the way)."""
        out: list[Event] = []
        for ev in events:
            if ev[0] == "text":
                text = replay.take(ev[2])
                if text:
                    out.append(("text", ev[1], text))
            else:
                out.append(ev)
        return out


async def _continue(ledger: Ledger, ctx: RequestContext, step: Step, opened: fb.Opened, out: _Out,
                    res: fb.PumpResult, first_input: int, resume: Resume | None) -> tuple[fb.PumpResult, Usage, str]:
    """After a break past the first token: continue the answer on another replica while that can
    be done honestly, break after break; (how the stream ended, the answer's usage, why it was
    not continued)."""
    up = step.upstream
    metrics = ledger.metrics
    usage = billed(opened.parser.usage, ctx.est_prompt, ctx.max_tokens)
    while res.reason and not res.finished:
        why = refusal(out.sent, up.spec.continuation, ctx.max_tokens) if resume is not None else "no continuation"
        got = await resume(out.sent) if resume is not None and not why else why
        if isinstance(got, str):
            metrics.continuations.inc((ctx.agent.name, up.name, "refused"))
            return res, usage, got
        t2, op2, replay = got
        before = out.sent.chunks
        if out.passthrough and out.restamp is None and opened.raw:
            out.restamp = ChunkRestamper(opened.raw[0])
        out.restamp = out.restamp or ChunkRestamper(b"{}")
        out.replay = replay
        out.raw_replay = Replay(replay.left) if replay is not None and out.passthrough else None
        # A replay's own usage is the answer's; a prefill continuation's adds to what was sent.
        out.usage = (functools.partial(summed, first_input, before, op2.parser.usage) if replay is None
                     else functools.partial(_as_is, op2.parser.usage))
        broke = res
        out.continued.append(broke.reason)
        try:
            res = await fb.pump(op2, up.stall_timeout, out.send)
            if replay is not None and replay.left and not res.reason:
                raise ReplayMismatch("the replay ended before the text sent")
        except ReplayMismatch as exc:
            out.continued.pop()  # nothing of it reached the client
            op2.resp.close()
            t2.breaker.release()  # a different answer is no fault of the replica's
            ledger.charge(ctx, step, billed(op2.parser.usage, ctx.est_prompt, ctx.max_tokens))
            metrics.continuations.inc((ctx.agent.name, up.name, "replay_mismatch"))
            return broke, usage, f"{exc} (on {t2.url})"
        except BaseException as exc:
            # The client left (or the task was cancelled): stop the continuation, charge what it
            # may have generated, and let the caller account the request.
            op2.resp.close()
            t2.breaker.release()
            if isinstance(exc, fb.ClientGone):
                ledger.charge(ctx, step, billed(op2.parser.usage, ctx.est_prompt, ctx.max_tokens))
            raise
        finally:
            t2.in_flight -= 1
            out.replay = out.raw_replay = None
        usage = out.usage()
        ledger.charge(ctx, step, billed(op2.parser.usage, ctx.est_prompt, ctx.max_tokens))
        if res.reason:
            op2.resp.close()
            t2.breaker.failure()
            metrics.stream_errors.inc((ctx.agent.name, up.name, res.reason))
            metrics.continuations.inc((ctx.agent.name, up.name, "broke_again"))
        else:
            op2.resp.release()
            t2.breaker.success()
            metrics.continuations.inc((ctx.agent.name, up.name, "continued"))
    return res, usage, ""


def _as_is(usage: Usage) -> Usage:
    return usage
