"""Upstream bytes -> SSE `data:` payloads -> canonical events, and upstream error bodies read.

`SSEReader` splits a response body into SSE payloads a network read at a time; a parser per
upstream protocol turns each payload into canonical events (see events.py) and keeps a running
`Usage`. A payload that is not what its protocol promises raises `MalformedChunk`, which the
request path treats as an upstream failure (before the first token: fall back; after: an
in-band error to the client).
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from agentdeploy.serving.pricing import Usage
from agentdeploy.serving.protocol.events import DONE, STOP_TO_ANTHROPIC, ApiKind, Event, new_id


class MalformedChunk(ValueError):
    """An upstream stream chunk that is not what its protocol promises."""


class ByteSource(Protocol):
    """A response body read as it arrives (httpclient.Body; a test's stand-in)."""

    async def readany(self) -> bytes: ...

    def set_exception(self, exc: BaseException) -> None: ...


class SSEReader:
    """Splits an upstream body into SSE `data:` payloads, a network read at a time."""

    __slots__ = ("content", "buf")

    def __init__(self, content: ByteSource) -> None:
        self.content = content
        self.buf = b""

    async def read_batch(self) -> list[bytes] | None:
        """The data payloads completed by the next network read ([] possible); None at EOF."""
        while True:
            chunk = await self.content.readany()
            if not chunk:
                return None
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n")
            buf = self.buf + chunk
            if b"\n\n" not in buf:
                self.buf = buf
                continue
            events = buf.split(b"\n\n")
            self.buf = events.pop()
            out = []
            for ev in events:
                if ev.startswith(b"data:") and b"\n" not in ev:
                    out.append(ev[6:] if ev[5:6] == b" " else ev[5:])
                    continue
                data = [ln[6:] if ln[5:6] == b" " else ln[5:] for ln in ev.split(b"\n") if ln.startswith(b"data:")]
                if data:
                    out.append(b"\n".join(data))
            if out:
                return out


class StreamParser(Protocol):
    """Turns one SSE payload into canonical events, keeping the stream's usage so far."""

    usage: Usage

    def feed(self, data: bytes) -> list[Event]: ...


class AnthropicStreamParser:
    """Parses Anthropic SSE events (`event:` name + JSON `data:`) into canonical events."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = Usage()

    def _take_usage(self, u: dict[str, Any] | None) -> None:
        if not u:
            return
        us = self.usage
        us.reported = True
        if "input_tokens" in u and u["input_tokens"] is not None:
            us.input_tokens = u["input_tokens"]
        if "output_tokens" in u and u["output_tokens"] is not None:
            us.output_tokens = u["output_tokens"]
        if u.get("cache_read_input_tokens") is not None:
            us.cache_read = u["cache_read_input_tokens"]
        split = u.get("cache_creation")
        if isinstance(split, dict):
            us.cache_write_5m = split.get("ephemeral_5m_input_tokens") or 0
            us.cache_write_1h = split.get("ephemeral_1h_input_tokens") or 0
        elif u.get("cache_creation_input_tokens") is not None and u["cache_creation_input_tokens"] != us.cache_write_5m + us.cache_write_1h:
            # A total without the TTL split (older API versions): bill it at the 5-minute rate.
            us.cache_write_5m, us.cache_write_1h = u["cache_creation_input_tokens"], 0

    def feed(self, data: bytes) -> list[Event]:
        try:
            obj = orjson.loads(data)
            kind = obj["type"]
            if kind == "content_block_delta":
                delta = obj["delta"]
                dk = delta["type"]
                if dk == "text_delta":
                    return [("text", obj["index"], delta["text"])]
                if dk == "input_json_delta":
                    return [("tool_delta", obj["index"], delta.get("partial_json", ""))]
                return []
            if kind == "ping":
                return []
            if kind == "message_start":
                msg = obj["message"]
                self._take_usage(msg.get("usage"))
                return [("start", msg.get("id"), msg.get("model"))]
            if kind == "content_block_start":
                block = obj["content_block"]
                if block["type"] == "tool_use":
                    return [("tool_start", obj["index"], block["id"], block["name"])]
                if block["type"] == "text" and block.get("text"):
                    return [("text", obj["index"], block["text"])]
                return []
            if kind == "content_block_stop":
                return []
            if kind == "message_delta":
                self._take_usage(obj.get("usage"))
                self.usage.final = self.usage.final or bool(obj.get("usage"))
                delta = obj.get("delta") or {}
                if delta.get("stop_reason"):
                    return [("finish", delta["stop_reason"], delta.get("stop_sequence"))]
                return []
            if kind == "message_stop":
                return [DONE]
            if kind == "error":
                err = obj.get("error") or {}
                return [("error", err.get("type", "api_error"), err.get("message", ""))]
            return []
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedChunk(f"malformed Anthropic stream event: {data[:120]!r}") from exc


class OpenAIStreamParser:
    """Parses OpenAI chat.completion.chunk `data:` payloads into canonical events."""

    __slots__ = ("usage", "started")

    def __init__(self) -> None:
        self.usage = Usage()
        self.started = False

    def feed(self, data: bytes) -> list[Event]:
        if data == b"[DONE]":
            return [DONE]
        try:
            obj = orjson.loads(data)
            if "error" in obj:
                err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
                return [("error", err.get("type") or "api_error", err.get("message", ""))]
            choices = obj["choices"]
            out: list[Event] = []
            if not self.started:
                self.started = True
                out.append(("start", obj.get("id"), obj.get("model")))
            u = obj.get("usage")
            if u:
                cached = ((u.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0
                us = self.usage
                us.reported = us.final = True
                us.input_tokens = u.get("prompt_tokens", 0) - cached
                us.cache_read = cached
                us.output_tokens = u.get("completion_tokens", 0)
            for ch in choices:
                delta = ch.get("delta") or {}
                text = delta.get("content")
                if text:
                    out.append(("text", 0, text))
                for tc in delta.get("tool_calls") or ():
                    block = 1 + tc.get("index", 0)
                    fn = tc.get("function") or {}
                    if tc.get("id") or fn.get("name"):
                        out.append(("tool_start", block, tc.get("id") or new_id("call_"), fn.get("name", "")))
                    if fn.get("arguments"):
                        out.append(("tool_delta", block, fn["arguments"]))
                reason = ch.get("finish_reason")
                if reason:
                    seq = ch.get("stop_reason")
                    if reason == "stop" and isinstance(seq, str):
                        out.append(("finish", "stop_sequence", seq))
                    else:
                        out.append(("finish", STOP_TO_ANTHROPIC.get(reason, "end_turn"), None))
            return out
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedChunk(f"malformed OpenAI stream chunk: {data[:120]!r}") from exc


def parser_for(kind: ApiKind) -> StreamParser:
    return AnthropicStreamParser() if kind == "anthropic" else OpenAIStreamParser()


def _code(value: object) -> str:
    """An error code worth passing on: OpenAI's are words (`content_policy_violation`); vLLM puts
    the HTTP status there (400), which says nothing the status does not."""
    return value if isinstance(value, str) else ""


def upstream_error_fields(raw: bytes) -> tuple[str, str, str]:
    """(type, code, message) from an upstream error body of either protocol (best effort):
    OpenAI's `{"error": {"type", "code", "message"}}`, Anthropic's `{"type": "error", "error":
    {"type", "message"}}`, or a bare `{"type"?, "message", "code"?}` (vLLM); `code` is "" when there is none."""
    try:
        obj = orjson.loads(raw)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict):
            code = _code(err.get("code"))
            return str(err.get("type") or code or "api_error"), code, str(err.get("message") or "")
        if isinstance(obj, dict) and "message" in obj:
            return str(obj.get("type") or "api_error"), _code(obj.get("code")), str(obj["message"])
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return "api_error", "", raw[:300].decode("utf-8", "replace")


def upstream_error_message(kind: ApiKind, raw: bytes) -> tuple[str, str]:
    """(type, message) from an upstream error body of either protocol (best effort)."""
    err_type, _code, message = upstream_error_fields(raw)
    return err_type, message
