"""Walk an agent's chain: which upstream to try next, when to retry the same one, and what the
client is told when none could answer.

An entry is skipped at once when it has no healthy or only overloaded targets. 429/529 are
retried on the same upstream only while the wait fits the latency budget and the retry cap;
a failure likely to be transient (500/502/503/504, a reset before any response) is retried
once at once when a whole first-token wait still fits the deadline; then connection errors,
5xx, first-token timeouts, malformed or cut streams move on to the next entry; a context-length error moves on to an entry with a larger context; other client errors
go back to the client. Nothing has reached the client before the first token, so all of this
is invisible to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from agentdeploy.serving import fallback as fb
from agentdeploy.serving.cache_control import place_breakpoints
from agentdeploy.serving.continuation import Replay, Sent, continuation_payload, replays
from agentdeploy.serving.deliver import Ledger, RequestContext, billed, deliver
from agentdeploy.serving.http1 import Response, StreamResponse
from agentdeploy.serving.httpclient import Pool
from agentdeploy.serving.protocol.requests import TranslationError, upstream_request
from agentdeploy.serving.protocol.writers import client_error_type
from agentdeploy.serving.replies import H_ERROR, H_MODEL, H_UPSTREAM, Replies, exhausted_error
from agentdeploy.serving.runtime import Step
from agentdeploy.serving.upstreams import Target, Upstream

perf = time.perf_counter


@dataclass(slots=True)
class _Walk:
    """One request's way down its chain: its retry allowance and the payloads built so far."""

    #: perf_counter() by which retry waits must be over (the agent's latency budget); None: none.
    deadline: float | None
    retry_spent: float = 0.0
    #: (upstream kind, model) -> the request as that upstream is sent it, built once.
    payloads: dict[tuple[str, str], bytes] = field(default_factory=dict)


#: Told when a request meant for a self-hosted fleet found it unable to take it: (agent,
#: upstream, reason: no healthy node or all overloaded). The gateway counts it and wakes the fleet.
UnmetHook = Callable[[str, Upstream, str], None]


class ChainWalker:
    def __init__(self, pool: Pool, ledger: Ledger, replies: Replies, on_unmet: UnmetHook | None = None) -> None:
        self.pool = pool
        self.ledger = ledger
        self.metrics = ledger.metrics
        self.replies = replies
        self.on_unmet = on_unmet

    async def run(self, ctx: RequestContext, chain: list[Step]) -> Response | StreamResponse:
        """Try each entry in order until one answers, or answer the client with the last failure."""
        spec = ctx.agent.spec
        walk = _Walk(ctx.t_in + spec.deadline_s if spec.deadline_s else None)
        last: fb.Failed | None = None
        need_context: int | None = None
        for i, step in enumerate(chain):
            if need_context is not None and (step.context_tokens or 0) <= need_context:
                continue
            result = await self._try(ctx, walk, step, last_resort=i == len(chain) - 1)
            if not isinstance(result, fb.Failed):
                return result
            last = result
            if result.reason == fb.CONTEXT_LENGTH:
                need_context = step.context_tokens or 0
            ctx.reasons.append(f"{step.upstream.name}:{result.reason}")
            self.metrics.fallbacks.inc((ctx.agent.name, step.upstream.name, result.reason))
        return self._exhausted(ctx, last)

    async def _try(self, ctx: RequestContext, walk: _Walk, step: Step, last_resort: bool) -> Response | StreamResponse | fb.Failed:
        """One chain entry, retried while that fits: the answer, or why to move on."""
        up = step.upstream
        spec = ctx.agent.spec
        tries = 0
        retried_transient = False
        prev: fb.Failed | None = None  # the failure a retry follows (what to report if none can go)
        failed: list[Target] = []  # replicas that failed this request before its first token
        while True:
            target, why = up.pick(last_resort and not failed, step.ttft_timeout, exclude=failed)
            if target is None:
                if up.kind == "openai" and self.on_unmet is not None and not failed:
                    self.on_unmet(ctx.agent.name, up, why)
                return prev or fb.Failed(why, message=f"{up.name}: {why}")
            settled = False  # the breaker was told how the attempt went
            try:
                pkey = (up.kind, step.model)
                payload = walk.payloads.get(pkey)
                if payload is None:
                    try:
                        payload = walk.payloads[pkey] = self._payload(ctx, step)
                    except TranslationError as err:
                        self.ledger.refused(ctx.agent.name, ctx.protocol, 400, f"translation: {err}", ctx.t_in)
                        return self.replies.error(ctx.protocol, 400, "invalid_request_error", str(err))
                res = await self._attempt(ctx, step, target, payload)
                if isinstance(res, fb.Opened):
                    settled = True  # deliver reports to the breaker itself
                    return await self._deliver(ctx, step, target, res)
                if res.billed is not None:
                    self.ledger.charge(ctx, step, billed(res.billed, ctx.est_prompt, ctx.max_tokens))
                self.metrics.errors.inc((ctx.agent.name, up.name, res.reason))
                if res.reason in fb.HEALTH_FAILURES:
                    target.breaker.failure()
                else:
                    target.breaker.release()
                settled = True
            finally:
                if not settled:
                    # Whatever went wrong (a bug included), a claimed half-open trial slot must
                    # not stay claimed: that would wedge the target out of rotation for good.
                    target.breaker.release()
            if res.reason in (fb.RATE_LIMITED, fb.OVERLOADED):
                wait = fb.retry_wait(res, tries)
                if not fb.fits(wait, tries, spec.max_retries_per_upstream, walk.retry_spent, spec.retry_max_total_s, walk.deadline, perf()):
                    return res
                self._retrying(ctx, step, target, res, wait)
                await asyncio.sleep(wait)
                walk.retry_spent += wait
                ctx.waited += wait
                tries += 1
                prev = res
                continue
            if (res.transient and not retried_transient and tries < spec.max_retries_per_upstream
                    and self._fits_one_more(walk, step)):
                # A 5xx or a reset before any response usually clears on a second try: once,
                # when a whole first-token wait still fits the deadline, then fall back.
                self._retrying(ctx, step, target, res, 0.0)
                retried_transient = True
                tries += 1
                prev = res
                continue
            if res.reason in fb.HEALTH_FAILURES and len(failed) + 1 < len(up.targets) and self._fits_one_more(walk, step):
                # Another replica of the same model gives the answer this one would have (see
                # serving/continuation.py): try it before the next chain entry.
                self._retrying(ctx, step, target, res, 0.0)
                failed.append(target)
                prev = res
                continue
            if res.reason in fb.TERMINAL:
                return self._upstream_error(ctx, step, res)
            return res

    @staticmethod
    def _fits_one_more(walk: _Walk, step: Step) -> bool:
        return walk.deadline is None or perf() + step.ttft_timeout < walk.deadline

    def _retrying(self, ctx: RequestContext, step: Step, target: Target, res: fb.Failed, wait: float) -> None:
        """Every retry on the same upstream is counted and logged (it may bill twice)."""
        self.metrics.retries.inc((ctx.agent.name, step.upstream.name, res.reason))
        self.ledger.log({"event": "upstream_retry", "agent": ctx.agent.name, "upstream": step.upstream.name,
                         "target": target.url, "reason": res.reason, "status": res.status, "wait_s": round(wait, 3)})

    async def _attempt(self, ctx: RequestContext, step: Step, target: Target, payload: bytes,
                       ttft_timeout: float | None = None) -> fb.Opened | fb.Failed:
        target.in_flight += 1
        t0 = perf()
        try:
            res = await fb.open_attempt(self.pool, step.upstream, target, payload, ttft_timeout or step.ttft_timeout)
        except BaseException:
            target.in_flight -= 1
            raise
        finally:
            ctx.waited += perf() - t0
        if not isinstance(res, fb.Opened):
            target.in_flight -= 1
        return res

    async def _deliver(self, ctx: RequestContext, step: Step, target: Target, opened: fb.Opened) -> Response | StreamResponse | fb.Failed:
        """Carry an opened answer; the upstream response is closed on every way out (a no-op
        after a clean end, which already pooled its connection)."""
        broken = [target]  # every target this stream broke on: a continuation goes elsewhere

        async def resume(sent: Sent) -> tuple[Target, fb.Opened, Replay | None] | str:
            got = await self._resume(ctx, step, broken, sent)
            if not isinstance(got, str):
                broken.append(got[0])
            return got

        try:
            result = await deliver(self.ledger, ctx, step, target, opened, resume)
        except BaseException:
            target.breaker.release()
            raise
        finally:
            target.in_flight -= 1
            opened.resp.close()
        if isinstance(result, fb.Failed):
            # Only a non-streaming answer can fail here, before any byte was sent.
            target.breaker.failure()
            self.metrics.errors.inc((ctx.agent.name, step.upstream.name, result.reason))
        return result

    async def _resume(self, ctx: RequestContext, step: Step, broken: list[Target], sent: Sent
                      ) -> tuple[Target, fb.Opened, Replay | None] | str:
        """Open a continuation of a broken stream on another replica of the same upstream, within
        the agent's deadline: (target, opened, the replay to verify at temperature 0) or why not
        (the client's error then says so)."""
        up = step.upstream
        deadline_s = ctx.agent.spec.deadline_s
        wait = step.ttft_timeout
        if deadline_s is not None:
            left = ctx.t_in + deadline_s - perf()
            if left <= 0:
                return "the deadline has passed"
            wait = min(wait, left)
        target, why = up.pick(False, None, exclude=broken)
        if target is None:
            return f"no other replica ({why})"
        replay = Replay(sent.joined) if replays(ctx.body) else None
        try:
            payload = self._payload(ctx, step)
            if replay is None:
                payload = continuation_payload(payload, sent, ctx.max_tokens)
        except BaseException:
            target.breaker.release()
            raise
        res = await self._attempt(ctx, step, target, payload, wait)
        if isinstance(res, fb.Opened):
            return target, res, replay
        if res.billed is not None:
            self.ledger.charge(ctx, step, billed(res.billed, ctx.est_prompt, ctx.max_tokens))
        self.metrics.errors.inc((ctx.agent.name, up.name, res.reason))
        if res.reason in fb.HEALTH_FAILURES:
            target.breaker.failure()
        else:
            target.breaker.release()
        return f"the continuation on {target.url} failed ({res.reason}: {res.message})"

    @staticmethod
    def _payload(ctx: RequestContext, step: Step) -> bytes:
        """The request in the upstream's protocol, with the planned cache breakpoints for Claude."""
        up = step.upstream
        req = upstream_request(ctx.protocol, up.kind, ctx.body, step.model, ctx.max_tokens)
        cache = ctx.agent.spec.cache
        if up.kind == "anthropic" and cache.enabled:
            req = place_breakpoints(req, cache.breakpoints, cache.ttl, step.min_cacheable)
        return orjson.dumps(req)

    def _upstream_error(self, ctx: RequestContext, step: Step, res: fb.Failed) -> Response:
        """A client error the upstream reported (bad request, content filter): passed on."""
        self.metrics.requests.inc((ctx.agent.name, step.upstream.name, step.model, res.status or 400))
        self.ledger.log({"agent": ctx.agent.name, "upstream": step.upstream.name, "model": step.model, "status": res.status or 400,
                         "error": res.reason, "fallback": ctx.reasons})
        status = res.status or 400
        # The upstream's own type and code, as the client's protocol carries them: a refusal
        # stays `content_policy_violation`, not a generic 400 of the gateway's making.
        kind = client_error_type(ctx.protocol, status, res.error_type or (
            "content_filter" if res.reason == fb.CONTENT_FILTER else "invalid_request_error"))
        headers = {H_UPSTREAM: step.upstream.name, H_MODEL: step.model, H_ERROR: res.reason}
        return self.replies.error(ctx.protocol, status, kind, res.message or res.reason, headers, code=res.code or None)

    def _exhausted(self, ctx: RequestContext, last: fb.Failed | None) -> Response:
        status, kind, msg, headers = exhausted_error(ctx.protocol, last, ctx.reasons)
        self.metrics.requests.inc((ctx.agent.name, "", "", status))
        self.ledger.log({"agent": ctx.agent.name, "status": status, "fallback": ctx.reasons})
        return self.replies.error(ctx.protocol, status, kind, msg, headers)
