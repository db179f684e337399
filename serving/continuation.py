"""Finish a stream that broke after its first token on another replica of the same model.

The client already holds part of the answer, so another model (or a fresh answer) cannot take
over; the same model on another replica can, by continuing the assistant message it had begun:
vLLM's chat API does that with `continue_final_message: true` and `add_generation_prompt:
false`. The continuation is stitched into the client's stream by the caller (same id, same
indexes, usage summed). Only upstreams marked `continuation: true` (vLLM) are asked: Claude
models reject an assistant prefill that ends the conversation with a 400, and an OpenAI-
compatible server that does not know the flag would start a new answer instead of continuing.

A request at temperature 0 (or with its own `seed`) is replayed and verified instead (`Replay`): the other replica
answers it from the start, the text the client holds is checked against the replay and
dropped, and the rest is sent on: exact even where re-tokenizing the sent text would not give
back the tokens the model generated. A prefill continuation gets `max_tokens` less the text
chunks already sent (vLLM streams a token a chunk, but skips tokens that decode to no text: it
may overrun the cap by those).

The pure parts are here: whether a broken stream may be continued, what the continuation is
sent, and how the usage of the parts adds up; the chain does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from agentdeploy.serving.pricing import Usage
from agentdeploy.serving.protocol.events import Event


@dataclass(slots=True)
class Sent:
    """What of the answer has reached the client so far (read from the stream's events)."""

    text: list[str] = field(default_factory=list)
    #: Text events seen: vLLM streams one per generated token (one engine step each), so this is
    #: the number of tokens the continuation must not generate again.
    chunks: int = 0
    #: A tool call began: its arguments cannot be continued as text.
    tools: bool = False
    finished: bool = False

    def see(self, events: list[Event]) -> None:
        for ev in events:
            if ev[0] == "text":
                self.text.append(ev[2])
                self.chunks += 1
            elif ev[0] in ("tool_start", "tool_delta"):
                self.tools = True
            elif ev[0] == "finish":
                self.finished = True

    @property
    def joined(self) -> str:
        return "".join(self.text)


def refusal(sent: Sent, supported: bool, max_tokens: int) -> str:
    """Why this broken stream cannot be continued ("" when it can)."""
    if not supported:
        return "the upstream cannot continue an answer (assistant prefill)"
    if sent.tools:
        return "a tool call was under way"
    if not sent.text:
        return "no text to continue from"
    if sent.chunks >= max_tokens:
        return "the answer already had every token allowed"
    return ""


def continuation_payload(original: bytes, sent: Sent, max_tokens: int) -> bytes:
    """The original OpenAI-protocol request, with the text sent so far as a final assistant
    message to continue, and only the tokens still allowed: the answer as a whole keeps the
    client's bounds, so `max_tokens` and vLLM's `min_tokens` (no end of answer before it) both
    count the tokens already sent."""
    req: dict[str, Any] = orjson.loads(original)
    req["messages"] = [*req.get("messages", []), {"role": "assistant", "content": sent.joined}]
    req["continue_final_message"] = True
    req["add_generation_prompt"] = False
    req["max_tokens"] = max_tokens - sent.chunks
    req.pop("max_completion_tokens", None)
    min_tokens = req.get("min_tokens")
    if isinstance(min_tokens, int) and not isinstance(min_tokens, bool):
        req["min_tokens"] = max(0, min_tokens - sent.chunks)
    return orjson.dumps(req)


def summed(first_input: int, chunks_before: int, rest: Usage) -> Usage:
    """The answer's usage as the client sees it: the prompt once (the continuation's prompt holds
    the `chunks_before` tokens already sent, which were output, not input) and every output
    token of all parts. `final` only once the continuation's closing usage arrived."""
    prompt_in = max(0, rest.input_tokens - chunks_before) if rest.reported else first_input
    return Usage(prompt_in, chunks_before + rest.output_tokens, rest.cache_write_5m, rest.cache_write_1h,
                 rest.cache_read, reported=rest.reported, final=rest.final)


class ReplayMismatch(Exception):
    """A replayed answer differed from the text the client already holds: not the same answer."""


class Replay:
    """Replay-and-verify (temperature 0): the other replica answers the original request from the
    start; the text the client already holds is checked against the replay and dropped, and only
    what follows it is sent on. Exact by construction, whatever the tokenizer does with a prefix."""

    __slots__ = ("left",)

    def __init__(self, sent: str) -> None:
        self.left = sent

    def take(self, text: str) -> str:
        """The part of `text` past the verified prefix; ReplayMismatch when it differs."""
        if not self.left:
            return text
        n = min(len(self.left), len(text))
        if text[:n] != self.left[:n]:
            raise ReplayMismatch(f"the replay differed from the text sent after {len(self.left)} characters left to match")
        self.left = self.left[n:]
        return text[n:]


def replays(body: dict[str, Any]) -> bool:
    """Whether a continuation replays and verifies instead of continuing a prefill: only a
    request that asked for reproducible decoding yields the same text twice — greedy
    (temperature 0), or sampling with its own `seed` (vLLM seeds a generator per request)."""
    t, seed = body.get("temperature"), body.get("seed")
    greedy = isinstance(t, int | float) and not isinstance(t, bool) and t == 0
    return greedy or (isinstance(seed, int) and not isinstance(seed, bool))


class ChunkRestamper:
    """Same protocol both sides: the continuation's raw chunks, re-stamped with the first part's
    id and created time, its opening role-only chunk dropped, its usage replaced by the sum."""

    __slots__ = ("cid", "created")

    def __init__(self, first_raw: bytes) -> None:
        head = orjson.loads(first_raw)
        self.cid = head.get("id")
        self.created = head.get("created")

    def chunk(self, data: bytes, usage: Usage | None, replay: Replay | None = None) -> bytes | None:
        obj = orjson.loads(data)
        choices = obj.get("choices") or []
        if replay is not None:
            for ch in choices:
                delta = ch.get("delta") or {}
                if delta.get("content"):
                    delta["content"] = replay.take(delta["content"])
        if choices and all(_empty(ch) for ch in choices) and not obj.get("usage"):
            return None
        obj["id"] = self.cid
        if self.created is not None:
            obj["created"] = self.created
        if obj.get("usage") and usage is not None:
            obj["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.output_tokens,
                            "total_tokens": usage.prompt_tokens + usage.output_tokens}
        return orjson.dumps(obj)


def _empty(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta") or {}
    return not delta.get("content") and not delta.get("tool_calls") and not choice.get("finish_reason")
