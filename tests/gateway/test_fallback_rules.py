"""serving/fallback.py's rules, without processes: failure classification, retry waits,
Retry-After, and what `pump` forwards around a broken chunk. (test_fallback.py drives the same
rules through the gateway as a process.)"""

import asyncio
import json
import random

import pytest

from agentdeploy.serving import fallback as fb
from agentdeploy.serving.protocol.parsers import SSEReader


def test_classify_status_routes_each_kind():
    assert fb.classify_status(400, "openai", b'{"error":{"message":"This model\'s maximum context length is 512 tokens"}}').reason == fb.CONTEXT_LENGTH
    assert fb.classify_status(400, "anthropic", b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 300000 tokens > 200000 maximum"}}').reason == fb.CONTEXT_LENGTH
    cf = fb.classify_status(400, "openai", b'{"error":{"message":"flagged","type":"content_filter"}}')
    assert cf.reason == fb.CONTENT_FILTER
    assert cf.reason in fb.TERMINAL
    assert fb.classify_status(429, "anthropic", b"{}").reason == fb.RATE_LIMITED
    assert fb.classify_status(529, "anthropic", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}').reason == fb.OVERLOADED
    assert fb.classify_status(503, "openai", b"down").reason in fb.HEALTH_FAILURES
    assert fb.classify_status(400, "openai", b'{"error":{"message":"bad temperature"}}').reason == fb.CLIENT_ERROR


@pytest.mark.parametrize("message", [
    "The decoder prompt (length 600) is longer than the maximum model length of 512. Make sure that `max_model_len` is no smaller than the number of text tokens.",
    "Input length (600) exceeds model's maximum context length (512).",
    "This model's maximum context length is 512 tokens. However, your prompt contains 600 input tokens",
    "prompt is too long: 210000 tokens > 200000 maximum",
])
def test_every_context_length_phrasing_is_classified(message):
    raw = json.dumps({"error": {"message": message, "type": "BadRequestError", "code": 400}}).encode()
    assert fb.classify_status(400, "openai", raw).reason == fb.CONTEXT_LENGTH
    other = json.dumps({"error": {"message": "temperature must be between 0 and 2", "type": "BadRequestError"}}).encode()
    assert fb.classify_status(400, "openai", other).reason == fb.CLIENT_ERROR


def test_retry_waits_honour_retry_after_and_fit_the_budget():
    f = fb.Failed(fb.RATE_LIMITED, 429, retry_after=1.5)
    assert fb.retry_wait(f, 0) == 1.5
    rng = random.Random(1)
    waits = [fb.retry_wait(fb.Failed(fb.OVERLOADED), t, rng) for t in range(4)]
    assert all(0.125 <= w <= 2.0 for w in waits)
    assert waits[3] > waits[0]
    assert fb.fits(1.5, 0, 2, 0.0, 10.0, deadline=10.0, now=5.0)
    assert not fb.fits(1.5, 0, 2, 0.0, 10.0, deadline=6.0, now=5.0)  # would not fit the latency budget
    assert not fb.fits(1.5, 2, 2, 0.0, 10.0, None, 0.0)  # retries used up
    assert not fb.fits(1.5, 0, 2, 9.0, 10.0, None, 0.0)  # total retry cap


def test_retry_after_reads_seconds_and_http_dates():
    now = 1_800_000_000.0
    assert fb._retry_after({"retry-after": "3"}, now) == 3.0
    from email.utils import formatdate

    assert fb._retry_after({"retry-after": formatdate(now + 7, usegmt=True)}, now) == pytest.approx(7.0)
    assert fb._retry_after({"retry-after": formatdate(now - 60, usegmt=True)}, now) == 0.0  # already past
    assert fb._retry_after({"retry-after": "soon"}, now) is None
    assert fb._retry_after({}, now) is None


class _OneRead:
    """An upstream body that arrives in the given network reads (then EOF)."""

    def __init__(self, *reads: bytes) -> None:
        self.reads = list(reads)

    async def readany(self) -> bytes:
        return self.reads.pop(0) if self.reads else b""

    def set_exception(self, exc: BaseException) -> None:  # the stall watchdog's hook
        raise AssertionError(f"unexpected stall: {exc}")


@pytest.mark.parametrize("bad, reason", [
    (b'data: {"id": "x", "choices": [{"delta": {"content": "unterminated\n\n', fb.MALFORMED),
    (b'data: {"error": {"message": "engine died", "type": "server_error"}}\n\n', fb.STREAM_ERROR),
])
def test_pump_forwards_the_valid_chunks_read_together_with_a_broken_one(bad, reason):
    """Pass-through forwards raw payloads: the chunk before a broken one in the same network
    read must still reach the client before the error, not vanish with it."""
    good = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok2 "},"finish_reason":null}]}\n\n'
    opened = fb.Opened(None, SSEReader(_OneRead(good + bad)), fb.parser_for("openai"), [], [])
    sent_raw: list = []
    sent_text: list = []

    async def sink(events: list, raw: list) -> None:
        sent_raw.extend(raw)
        sent_text.extend(ev[2] for ev in events if ev[0] == "text")

    result = asyncio.run(fb.pump(opened, 5.0, sink))
    assert result.reason == reason
    assert sent_text == ["tok2 "]
    assert len(sent_raw) == 1
    assert b"tok2" in sent_raw[0]
