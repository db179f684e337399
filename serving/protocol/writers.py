"""Canonical events -> what the client reads: SSE in its protocol, one whole body, or an error.

A streaming client gets its protocol's SSE from a writer (`head`, then `event` per canonical
event, then `end` or an in-band `error`); a non-streaming client gets one body built by the
`Collector`. Both report usage in the client's protocol (`openai_usage`, `anthropic_usage`).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from agentdeploy.serving.pricing import Usage
from agentdeploy.serving.protocol.events import STOP_TO_OPENAI, ApiKind, Event, JsonObject, new_id


class StreamWriter(Protocol):
    """Canonical events -> SSE bytes in one client protocol."""

    def head(self, usage: Usage | None = None) -> bytes: ...

    def event(self, ev: Event) -> bytes: ...

    def end(self, usage: Usage) -> bytes: ...

    def error(self, kind: str, message: str) -> bytes: ...


class OpenAIStreamWriter:
    """Canonical events -> OpenAI chat.completion.chunk SSE bytes."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.model = model
        self._id = new_id("chatcmpl-")
        self._prefix = (
            b'data: {"id":"' + self._id.encode() + b'","object":"chat.completion.chunk","created":'
            + str(int(time.time())).encode() + b',"model":' + orjson.dumps(model) + b',"choices":[{"index":0,"delta":'
        )
        self._tools: dict[int, int] = {}
        self._finish: str | None = None

    def _chunk(self, delta: JsonObject, finish: str | None = None) -> bytes:
        return self._prefix + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"

    def head(self, usage: Usage | None = None) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def event(self, ev: Event) -> bytes:
        if ev[0] == "text":
            return self._chunk({"content": ev[2]})
        if ev[0] == "tool_delta":
            idx = self._tools.get(ev[1], 0)
            return self._chunk({"tool_calls": [{"index": idx, "function": {"arguments": ev[2]}}]})
        if ev[0] == "tool_start":
            idx = self._tools.setdefault(ev[1], len(self._tools))
            return self._chunk({"tool_calls": [{"index": idx, "id": ev[2], "type": "function", "function": {"name": ev[3], "arguments": ""}}]})
        if ev[0] == "finish":
            self._finish = STOP_TO_OPENAI.get(ev[1], "stop")
        return b""

    def end(self, usage: Usage) -> bytes:
        out = self._chunk({}, self._finish or "stop")
        if self.include_usage:
            out += b'data: {"id":"' + self._id.encode() + b'","object":"chat.completion.chunk","created":' + str(int(time.time())).encode() + b',"model":' + orjson.dumps(self.model) + b',"choices":[],"usage":' + orjson.dumps(openai_usage(usage)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, kind: str, message: str) -> bytes:
        return b"data: " + orjson.dumps({"error": {"message": message, "type": kind, "code": kind, "param": None}}) + b"\n\n"


def _sse(name: bytes, obj: JsonObject) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class AnthropicStreamWriter:
    """Canonical events -> Anthropic Messages SSE, in the API's order (blocks renumbered from 0)."""

    def __init__(self, model: str, input_tokens_estimate: int) -> None:
        self.model = model
        self._id = new_id("msg_")
        self._est = input_tokens_estimate
        self._open: int | None = None  # upstream block index of the open block
        self._next = 0  # next client block index
        self._pinged = False
        self._stop: tuple[str, str | None] = ("end_turn", None)

    def head(self, usage: Usage | None = None) -> bytes:
        if usage is not None and usage.reported:
            u = anthropic_usage(usage)
            u["output_tokens"] = 1
        else:
            u = {"input_tokens": self._est, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
        msg: JsonObject = {
            "id": self._id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": u,
        }
        return _sse(b"message_start", {"type": "message_start", "message": msg})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _sse(b"content_block_stop", {"type": "content_block_stop", "index": self._next - 1})

    def _begin(self, upstream_block: int, block: JsonObject) -> bytes:
        out = self._close()
        self._open = upstream_block
        out += _sse(b"content_block_start", {"type": "content_block_start", "index": self._next, "content_block": block})
        self._next += 1
        if not self._pinged:
            self._pinged = True
            out += b'event: ping\ndata: {"type": "ping"}\n\n'
        return out

    def event(self, ev: Event) -> bytes:
        if ev[0] == "text":
            out = b"" if self._open == ev[1] else self._begin(ev[1], {"type": "text", "text": ""})
            return out + _sse(b"content_block_delta", {"type": "content_block_delta", "index": self._next - 1, "delta": {"type": "text_delta", "text": ev[2]}})
        if ev[0] == "tool_delta":
            return _sse(b"content_block_delta", {"type": "content_block_delta", "index": self._next - 1, "delta": {"type": "input_json_delta", "partial_json": ev[2]}})
        if ev[0] == "tool_start":
            return self._begin(ev[1], {"type": "tool_use", "id": ev[2], "name": ev[3], "input": {}})
        if ev[0] == "finish":
            self._stop = (ev[1], ev[2])
        return b""

    def end(self, usage: Usage) -> bytes:
        out = self._close()
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop[0], "stop_sequence": self._stop[1]}, "usage": anthropic_usage(usage)}
        return out + _sse(b"message_delta", delta) + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

    def error(self, kind: str, message: str) -> bytes:
        return _sse(b"error", {"type": "error", "error": {"type": kind, "message": message}})


# --------------------------------------------------------------------------- whole responses


class Collector:
    """Collects canonical events into content blocks, for a non-streaming client."""

    def __init__(self) -> None:
        self.blocks: list[JsonObject] = []
        self._index: dict[int, JsonObject] = {}
        self.stop: tuple[str, str | None] = ("end_turn", None)

    def event(self, ev: Event) -> bytes:
        if ev[0] == "text":
            block = self._index.get(ev[1])
            if block is None:
                block = self._index[ev[1]] = {"type": "text", "text": ""}
                self.blocks.append(block)
            block["text"] += ev[2]
        elif ev[0] == "tool_start":
            block = self._index[ev[1]] = {"type": "tool_use", "id": ev[2], "name": ev[3], "json": ""}
            self.blocks.append(block)
        elif ev[0] == "tool_delta":
            block = self._index.get(ev[1])
            if block is not None:
                block["json"] += ev[2]
        elif ev[0] == "finish":
            self.stop = (ev[1], ev[2])
        return b""

    def _tool_input(self, block: JsonObject) -> Any:
        try:
            return orjson.loads(block["json"] or "{}")
        except orjson.JSONDecodeError:
            return {}

    def anthropic_body(self, model: str, usage: Usage) -> JsonObject:
        content = []
        for b in self.blocks:
            if b["type"] == "text":
                content.append({"type": "text", "text": b["text"]})
            else:
                content.append({"type": "tool_use", "id": b["id"], "name": b["name"], "input": self._tool_input(b)})
        return {
            "id": new_id("msg_"), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": self.stop[0], "stop_sequence": self.stop[1], "usage": anthropic_usage(usage),
        }

    def openai_body(self, model: str, usage: Usage) -> JsonObject:
        text = "".join(b["text"] for b in self.blocks if b["type"] == "text")
        calls = [
            {"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": b["json"] or "{}"}}
            for b in self.blocks
            if b["type"] == "tool_use"
        ]
        message: dict[str, Any] = {"role": "assistant", "content": text if (text or not calls) else None}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": STOP_TO_OPENAI.get(self.stop[0], "stop")}],
            "usage": openai_usage(usage),
        }


def openai_usage(u: Usage) -> JsonObject:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.prompt_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
    }


def anthropic_usage(u: Usage) -> JsonObject:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_5m, "ephemeral_1h_input_tokens": u.cache_write_1h},
        "output_tokens": u.output_tokens,
    }


def error_body(protocol: ApiKind, kind: str, message: str, param: str | None = None, code: str | None = None) -> JsonObject:
    """An error in the client's protocol (the gateway's own refusals and upstream errors passed on);
    `param` names the offending field (OpenAI's `param`; Anthropic's message starts with it);
    `code` is an upstream's own error code (OpenAI's `code`; kept beside the type for Anthropic)."""
    if protocol == "anthropic":
        err: JsonObject = {"type": kind, "message": message}
        if code and code != kind:
            err["code"] = code
        return {"type": "error", "error": err}
    return {"error": {"message": message, "type": kind, "code": code or kind, "param": param}}


#: The error types the Messages API uses, and the one each status gets when an upstream's type is
#: not among them (an OpenAI-compatible upstream's free-form type).
ANTHROPIC_ERROR_TYPES = frozenset(("invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                                   "request_too_large", "rate_limit_error", "api_error", "overloaded_error"))
_ANTHROPIC_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                        404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def client_error_type(protocol: ApiKind, status: int, upstream_type: str) -> str:
    """The upstream's error type as the client's protocol can carry it: OpenAI types are free
    strings (kept as they are); an Anthropic client gets a Messages API type, the upstream's own
    when it is one, else the one its status means."""
    if protocol == "openai" or upstream_type in ANTHROPIC_ERROR_TYPES:
        return upstream_type
    return _ANTHROPIC_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")
