"""One attempt against one upstream target, and how its failure is classified.

`open_attempt` sends the request and reads until the first *valid content* arrives (a token,
a tool call, or a finish) within the entry's time-to-first-token limit; nothing has reached
the client yet, so any failure up to here is invisible to it and the chain moves on.
`pump` then carries the rest of the stream with an idle (stall) timer between chunks. What
counts as a failure, and whether it is retried on the same upstream, moved past, or returned
to the client, is decided by the pure `classify_status` and `retry_wait`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import aiohttp

from agentdeploy.serving.httpclient import Pool, UpstreamConnectError, UpstreamResponse
from agentdeploy.serving.pricing import Usage
from agentdeploy.serving.protocol.events import ApiKind, Event
from agentdeploy.serving.protocol.parsers import (
    ByteSource,
    MalformedChunk,
    SSEReader,
    StreamParser,
    parser_for,
    upstream_error_fields,
)
from agentdeploy.serving.upstreams import Target, Upstream

#: Canonical events that prove the upstream is answering (what "first token" means here).
COMMIT_EVENTS = frozenset(("text", "tool_start", "finish", "done"))

# Failure reasons (also the `reason` label of the fallback / error metrics).
CONNECT = "connect_error"
DISCONNECT = "disconnected"
TTFT = "ttft_timeout"
STALL = "stall"
MALFORMED = "malformed_chunk"
TRUNCATED = "truncated_stream"
SERVER_ERROR = "server_error"
RATE_LIMITED = "rate_limited"
OVERLOADED = "overloaded"
CONTEXT_LENGTH = "context_length"
CLIENT_ERROR = "client_error"
CONTENT_FILTER = "content_filter"
UPSTREAM_AUTH = "upstream_auth"
NOT_FOUND = "not_found"
STREAM_ERROR = "upstream_stream_error"
UPSTREAM_TIMEOUT = "upstream_request_timeout"
CONFLICT = "upstream_conflict"

#: Failures that say something about the target's health (they feed its circuit breaker).
HEALTH_FAILURES = frozenset((CONNECT, DISCONNECT, TTFT, STALL, MALFORMED, TRUNCATED, SERVER_ERROR, STREAM_ERROR, NOT_FOUND))
#: In-band `error` events (a 200 whose stream then says it failed) that mean the same as a status.
IN_BAND = {"overloaded_error": OVERLOADED, "rate_limit_error": RATE_LIMITED, "api_error": SERVER_ERROR}
#: Failures to hand back to the client rather than try elsewhere.
TERMINAL = frozenset((CLIENT_ERROR, CONTENT_FILTER))
#: Statuses that usually clear on a second try (a worker restarting, a proxy hiccup): 501 and
#: 505 say the request can never work there, so they are not among them.
TRANSIENT_STATUS = frozenset((500, 502, 503, 504))


@dataclass(slots=True)
class Failed:
    reason: str
    status: int = 0
    retry_after: float | None = None
    error_type: str = ""
    message: str = ""
    #: The upstream's own error code, when its error body had one (`content_policy_violation`).
    code: str = ""
    #: Usage so far when the upstream had answered 200 before failing (it bills that attempt).
    billed: Usage | None = None
    #: Likely to clear on one more try at the same upstream (a 5xx, a connection reset before any
    #: response): worth one retry before falling back, when the deadline allows.
    transient: bool = False


@dataclass(slots=True)
class Opened:
    resp: UpstreamResponse
    reader: SSEReader
    parser: StreamParser
    pending: list[Event] = field(default_factory=list)
    #: The raw `data:` payloads those events came from (for same-protocol pass-through).
    raw: list[bytes] = field(default_factory=list)


def _retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After`: delay-seconds or an HTTP-date (RFC 9110); None if absent
    or unreadable (then jittered backoff applies)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


#: How upstreams say a prompt does not fit: OpenAI and Anthropic ("context length", "prompt is too
#: long"), vLLM's validation ("longer than the maximum model length of N", "exceeds model's maximum
#: context length").
CONTEXT_MARKERS = ("too long", "context length", "context_length", "maximum context", "maximum model length")


def classify_status(status: int, kind: ApiKind, raw: bytes) -> Failed:
    """What an error status from an upstream means for routing."""
    err_type, code, message = upstream_error_fields(raw)
    failure = _classify(status, err_type, code, message)
    failure.code = code
    return failure


def _classify(status: int, err_type: str, code: str, message: str) -> Failed:
    low = message.lower()
    if status == 429:
        return Failed(RATE_LIMITED, status, None, err_type, message)
    if status == 529 or err_type == "overloaded_error":
        return Failed(OVERLOADED, status, None, err_type, message)
    if status >= 500:
        return Failed(SERVER_ERROR, status, None, err_type, message, transient=status in TRANSIENT_STATUS)
    if status in (401, 403):
        return Failed(UPSTREAM_AUTH, status, None, err_type, message)
    if status == 404:
        return Failed(NOT_FOUND, status, None, err_type, message)
    if status in (408, 409):
        # The upstream timed out reading the request, or a conflict on its side: not the client's
        # fault, so never handed back; worth one retry, then the next entry.
        return Failed(UPSTREAM_TIMEOUT if status == 408 else CONFLICT, status, None, err_type, message, transient=True)
    if status in (400, 413, 422):
        if ("content_filter" in (err_type, code, low) or "content filter" in low or "content_policy" in low
                or "content_policy" in code):
            return Failed(CONTENT_FILTER, status, None, err_type, message)
        if status == 413 or any(m in low for m in CONTEXT_MARKERS):
            return Failed(CONTEXT_LENGTH, status, None, err_type, message)
        return Failed(CLIENT_ERROR, status, None, err_type, message)
    return Failed(CLIENT_ERROR, status, None, err_type, message)


def retry_wait(failure: Failed, tries: int, rng: random.Random = random._inst) -> float:
    """Retry-After when the upstream gave one; else exponential backoff with full jitter."""
    if failure.retry_after is not None:
        return failure.retry_after
    return rng.uniform(0.5, 1.0) * min(4.0, 0.25 * (2.0**tries))


def fits(wait: float, tries: int, max_tries: int, retry_spent: float, retry_cap: float, deadline: float | None, now: float) -> bool:
    """Whether waiting `wait` s to retry the same upstream stays inside every limit."""
    if tries >= max_tries or retry_spent + wait > retry_cap:
        return False
    return deadline is None or now + wait < deadline


async def open_attempt(pool: Pool, up: Upstream, target: Target, payload: bytes, ttft_timeout: float) -> Opened | Failed:
    """Send and read up to the first token. The response is closed on every way out but an
    Opened; a 200 that fails before its first token was still billed by the upstream, so the
    Failed carries the usage seen so far (`billed`)."""
    attempt = _Attempt(parser_for(up.kind))
    result: Opened | Failed | None = None
    try:
        result = await _first_token(pool, up, target, payload, ttft_timeout, attempt)
    except TimeoutError:
        result = Failed(TTFT, message=f"no first token within {ttft_timeout:.3g}s")
    except MalformedChunk as exc:
        result = Failed(MALFORMED, message=str(exc))
    except UpstreamConnectError as exc:
        result = Failed(CONNECT, message=str(exc))
    except (aiohttp.ClientError, OSError) as exc:
        # Reset before any response arrived: the request may never have reached the model.
        result = Failed(DISCONNECT, message=f"{type(exc).__name__}", transient=attempt.resp is None)
    finally:
        resp = attempt.resp
        if resp is not None and not isinstance(result, Opened):
            resp.close()
            # A 200 cut, stalled or garbled before its first token may have been generating:
            # bill it. An in-band error event (error_type set) is the API refusing the request.
            if resp.status == 200 and isinstance(result, Failed) and not result.error_type:
                result.billed = attempt.parser.usage
    return result


class _Attempt:
    """What one attempt has opened so far (so open_attempt can close it on any way out)."""

    __slots__ = ("parser", "resp")

    def __init__(self, parser: StreamParser) -> None:
        self.parser = parser
        self.resp: UpstreamResponse | None = None


async def _first_token(pool: Pool, up: Upstream, target: Target, payload: bytes, ttft_timeout: float,
                       attempt: _Attempt) -> Opened | Failed:
    parser = attempt.parser
    async with asyncio.timeout(ttft_timeout):
        resp = attempt.resp = await pool.post(target.ep, payload, up.connect_timeout)
        if resp.status != 200:
            raw = await resp.content.read(65536)
            failure = classify_status(resp.status, up.kind, raw)
            failure.retry_after = _retry_after(resp.headers)
            resp.release()
            return failure
        reader = SSEReader(resp.content)
        pending: list[Event] = []
        payloads: list[bytes] = []
        while True:
            batch = await reader.read_batch()
            if batch is None:
                return Failed(TRUNCATED, message="stream ended before the first token")
            committed = False
            payloads += batch
            for data in batch:
                for ev in parser.feed(data):
                    if ev[0] == "error":
                        # Before the first token an in-band overload is a 529 in all but status.
                        reason = IN_BAND.get(ev[1], STREAM_ERROR)
                        return Failed(reason, error_type=ev[1], message=ev[2], transient=reason == SERVER_ERROR)
                    pending.append(ev)
                    if ev[0] in COMMIT_EVENTS:
                        committed = True
            if committed:
                return Opened(resp, reader, parser, pending, payloads)


class ClientGone(Exception):
    """The client closed its connection; stop reading the upstream."""


@dataclass(slots=True)
class PumpResult:
    reason: str  # "" when the stream ended properly
    finished: bool  # a stop reason was seen
    waited: float  # seconds spent waiting on the upstream
    chars: int  # text characters carried (output estimate when usage is missing)
    error_type: str = ""
    message: str = ""


class StallError(Exception):
    """No upstream data within the stall timeout (raised into the response's stream)."""


class _Watchdog:
    """One timer per stall period instead of one per chunk: each chunk only stamps `last`;
    the timer re-arms itself until `last` is really `stall` seconds old, then fails the read."""

    __slots__ = ("loop", "stall", "last", "handle", "content")

    def __init__(self, loop: asyncio.AbstractEventLoop, stall: float, content: ByteSource) -> None:
        self.loop, self.stall, self.content = loop, stall, content
        self.last = loop.time()
        self.handle = loop.call_at(self.last + stall, self._check)

    def _check(self) -> None:
        due = self.last + self.stall
        if self.loop.time() >= due - 0.001:
            self.content.set_exception(StallError())
        else:
            self.handle = self.loop.call_at(due, self._check)

    def cancel(self) -> None:
        self.handle.cancel()


#: Where pump puts each batch: the parsed events and the raw payloads they came from.
Sink = Callable[[list[Event], list[bytes]], Awaitable[None]]


async def pump(opened: Opened, stall_timeout: float, sink: Sink) -> PumpResult:
    """Carry the stream after its first token into `sink(events, raw_payloads)`, until done,
    failure or stall."""
    loop = asyncio.get_running_loop()
    reader, parser = opened.reader, opened.parser
    first = opened.pending
    finished = any(ev[0] == "finish" for ev in first)
    chars = 0
    for ev in first:
        if ev[0] == "text":
            chars += len(ev[2])
    waited = 0.0
    await sink(first, opened.raw)
    if any(ev[0] == "done" for ev in first):
        return PumpResult("", True, 0.0, chars)
    dog = _Watchdog(loop, stall_timeout, reader.content)
    perf = time.perf_counter
    try:
        while True:
            t0 = perf()
            batch = await reader.read_batch()
            waited += perf() - t0
            if batch is None:
                # A finished answer without its final marker ([DONE] / message_stop) is complete.
                return PumpResult("" if finished else TRUNCATED, finished, waited, chars, message="" if finished else "upstream closed the stream mid-answer")
            dog.last = loop.time()
            events: list[Event] = []
            done = False
            for i, data in enumerate(batch):
                try:
                    parsed = parser.feed(data)
                except MalformedChunk:
                    await sink(events, batch[:i])  # the valid chunks read with the broken one
                    raise
                for ev in parsed:
                    if ev[0] == "text":
                        chars += len(ev[2])
                    elif ev[0] == "finish":
                        finished = True
                    elif ev[0] == "done":
                        done = True
                    elif ev[0] == "error":
                        await sink(events, batch[:i])
                        return PumpResult(STREAM_ERROR, finished, waited, chars, ev[1], ev[2])
                    events.append(ev)
            await sink(events, batch)
            if done:
                return PumpResult("", True, waited, chars)
    except StallError:
        failure = PumpResult(STALL, finished, waited, chars, message=f"no data for {stall_timeout:.3g}s mid-stream")
    except MalformedChunk as exc:
        failure = PumpResult(MALFORMED, finished, waited, chars, message=str(exc))
    except (aiohttp.ClientError, OSError) as exc:
        failure = PumpResult(DISCONNECT, finished, waited, chars, message=f"upstream connection lost ({type(exc).__name__})")
    finally:
        dog.cancel()
    if finished:
        # The answer had its stop reason: only the end marker (or trailing usage) went missing.
        failure.reason = ""
    return failure
