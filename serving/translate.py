"""OpenAI Chat Completions <-> Anthropic Messages: requests, stream events, responses, usage.

Every upstream is asked to stream (the gateway needs time-to-first-token and stall detection
for non-streaming clients too); its stream is parsed into small canonical events, and those
are re-emitted in the client's protocol: as SSE for a streaming client, or collected into one
response body for a non-streaming one. Canonical events are tuples, cheapest to build:

  ("start", id, model)                    upstream stream opened
  ("text", block, text)                   text delta for upstream block index `block`
  ("tool_start", block, call_id, name)    a tool call begins
  ("tool_delta", block, partial_json)     tool-call arguments, streamed
  ("finish", stop_reason, stop_sequence)  Anthropic stop reason vocabulary
  ("error", type, message)                in-band error from the upstream
  ("done",)                               the upstream ended the stream properly

Usage is not an event: each parser keeps a running `Usage` the caller reads at the end.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson

from agentdeploy.serving.pricing import Usage

#: Anthropic stop_reason -> OpenAI finish_reason.
STOP_TO_OPENAI = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
#: OpenAI finish_reason -> Anthropic stop_reason.
STOP_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

DONE = ("done",)
_ids = itertools.count(1)


class TranslationError(ValueError):
    """The request cannot be expressed for the target protocol (answered with a 400)."""


class MalformedChunk(ValueError):
    """An upstream stream chunk that is not what its protocol promises."""


def new_id(prefix: str) -> str:
    return f"{prefix}{time.time_ns():x}{next(_ids):x}"


# --------------------------------------------------------------------------- requests


def _text_of(content: Any) -> str:
    """Plain text of an OpenAI or Anthropic content value (string or list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                out.append(part.get("text", ""))
            elif isinstance(part, str):
                out.append(part)
            else:
                raise TranslationError(f"content part of type {part.get('type') if isinstance(part, dict) else type(part).__name__!r} cannot be sent as text")
        return "\n".join(out)
    raise TranslationError("message content must be a string or a list of parts")


def _openai_parts_to_blocks(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise TranslationError("message content must be a string or a list of parts")
    blocks: list[dict] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            block = {"type": "text", "text": part.get("text", "")}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise TranslationError(f"content part of type {kind!r} is not supported by the Anthropic upstream")
    return blocks


def _append(messages: list[dict], role: str, blocks: list[dict]) -> None:
    """Anthropic wants alternating roles: merge consecutive messages of one role."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def openai_to_anthropic_request(body: dict, model: str, max_tokens: int) -> dict:
    system: list[str] = []
    messages: list[dict] = []
    for m in body.get("messages") or ():
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(m.get("content")))
        elif role == "user":
            _append(messages, "user", _openai_parts_to_blocks(m.get("content")))
        elif role == "assistant":
            blocks = _openai_parts_to_blocks(m.get("content"))
            for tc in m.get("tool_calls") or ():
                fn = tc.get("function") or {}
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    raise TranslationError(f"tool call {tc.get('id')!r} has arguments that are not JSON") from None
                blocks.append({"type": "tool_use", "id": tc.get("id") or new_id("toolu_"), "name": fn.get("name", ""), "input": args})
            _append(messages, "assistant", blocks)
        elif role == "tool":
            result = {"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""), "content": _text_of(m.get("content"))}
            _append(messages, "user", [result])
        else:
            raise TranslationError(f"message role {role!r} is not supported")
    out: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages, "stream": True}
    if system:
        out["system"] = [{"type": "text", "text": "\n\n".join(system)}]
    if "temperature" in body and body["temperature"] is not None:
        out["temperature"] = min(1.0, float(body["temperature"]))
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        out["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if t.get("type", "function") == "function"
        ]
        choice = body.get("tool_choice")
        if choice == "required":
            out["tool_choice"] = {"type": "any"}
        elif choice == "none":
            out["tool_choice"] = {"type": "none"}
        elif isinstance(choice, dict):
            out["tool_choice"] = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
        elif choice == "auto":
            out["tool_choice"] = {"type": "auto"}
    user = body.get("user")
    if user:
        out["metadata"] = {"user_id": str(user)}
    return out


def anthropic_to_openai_request(body: dict, model: str, max_tokens: int) -> dict:
    msgs: list[dict] = []
    system = body.get("system")
    if system:
        msgs.append({"role": "system", "content": _text_of(system)})
    for m in body.get("messages") or ():
        role, content = m.get("role"), m.get("content")
        if role not in ("user", "assistant"):
            raise TranslationError(f"message role {role!r} is not supported")
        if isinstance(content, str):
            msgs.append({"role": role, "content": content})
            continue
        texts: list[str] = []
        calls: list[dict] = []
        for block in content or ():
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "tool_use" and role == "assistant":
                calls.append({
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input", {})).decode()},
                })
            elif kind == "tool_result" and role == "user":
                msgs.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": _text_of(block.get("content"))})
            elif kind in ("thinking", "redacted_thinking"):
                continue
            else:
                raise TranslationError(f"content block of type {kind!r} is not supported by the OpenAI-compatible upstream")
        if role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts else None}
            if calls:
                msg["tool_calls"] = calls
            msgs.append(msg)
        elif texts:
            msgs.append({"role": "user", "content": "\n".join(texts)})
    out: dict[str, Any] = {
        "model": model,
        "messages": msgs,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    tools = body.get("tools")
    if tools:
        out["tools"] = [
            {"type": "function", "function": {"name": t["name"], "description": t.get("description", ""), "parameters": t.get("input_schema", {})}}
            for t in tools
            if "input_schema" in t
        ]
        choice = (body.get("tool_choice") or {}).get("type")
        if choice == "any":
            out["tool_choice"] = "required"
        elif choice == "none":
            out["tool_choice"] = "none"
        elif choice == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": body["tool_choice"].get("name")}}
        elif choice == "auto":
            out["tool_choice"] = "auto"
    return out


def _strip_cache_control(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content):
            m = dict(m)
            m["content"] = [{k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p for p in content]
        out.append(m)
    return out


def openai_passthrough_request(body: dict, model: str, max_tokens: int) -> dict:
    """OpenAI client to OpenAI-compatible upstream: same shape, our model/limits, usage on."""
    out = dict(body)
    out.pop("max_completion_tokens", None)
    out["model"] = model
    out["max_tokens"] = max_tokens
    out["stream"] = True
    out["stream_options"] = {"include_usage": True}
    out["messages"] = _strip_cache_control(body.get("messages") or [])
    return out


def anthropic_passthrough_request(body: dict, model: str, max_tokens: int) -> dict:
    out = dict(body)
    out["model"] = model
    out["max_tokens"] = max_tokens
    out["stream"] = True
    return out


def upstream_request(client_protocol: str, upstream_kind: str, body: dict, model: str, max_tokens: int) -> dict:
    if client_protocol == "openai":
        if upstream_kind == "openai":
            return openai_passthrough_request(body, model, max_tokens)
        return openai_to_anthropic_request(body, model, max_tokens)
    if upstream_kind == "anthropic":
        return anthropic_passthrough_request(body, model, max_tokens)
    return anthropic_to_openai_request(body, model, max_tokens)


# --------------------------------------------------------------------------- upstream streams


class AnthropicStreamParser:
    """Parses Anthropic SSE events (`event:` name + JSON `data:`) into canonical events."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = Usage()

    def _take_usage(self, u: dict | None) -> None:
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

    def feed(self, data: bytes) -> list[tuple]:
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

    def feed(self, data: bytes) -> list[tuple]:
        if data == b"[DONE]":
            return [DONE]
        try:
            obj = orjson.loads(data)
            if "error" in obj:
                err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
                return [("error", err.get("type") or "api_error", err.get("message", ""))]
            choices = obj["choices"]
            out: list[tuple] = []
            if not self.started:
                self.started = True
                out.append(("start", obj.get("id"), obj.get("model")))
            u = obj.get("usage")
            if u:
                cached = ((u.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0
                us = self.usage
                us.reported = True
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


def parser_for(kind: str) -> AnthropicStreamParser | OpenAIStreamParser:
    return AnthropicStreamParser() if kind == "anthropic" else OpenAIStreamParser()


# --------------------------------------------------------------------------- client streams


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

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        return self._prefix + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"

    def head(self, usage: Usage | None = None) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def event(self, ev: tuple) -> bytes:
        kind = ev[0]
        if kind == "text":
            return self._chunk({"content": ev[2]})
        if kind == "tool_delta":
            idx = self._tools.get(ev[1], 0)
            return self._chunk({"tool_calls": [{"index": idx, "function": {"arguments": ev[2]}}]})
        if kind == "tool_start":
            idx = self._tools.setdefault(ev[1], len(self._tools))
            return self._chunk({"tool_calls": [{"index": idx, "id": ev[2], "type": "function", "function": {"name": ev[3], "arguments": ""}}]})
        if kind == "finish":
            self._finish = STOP_TO_OPENAI.get(ev[1], "stop")
        return b""

    def end(self, usage: Usage) -> bytes:
        out = self._chunk({}, self._finish or "stop")
        if self.include_usage:
            out += b'data: {"id":"' + self._id.encode() + b'","object":"chat.completion.chunk","created":' + str(int(time.time())).encode() + b',"model":' + orjson.dumps(self.model) + b',"choices":[],"usage":' + orjson.dumps(openai_usage(usage)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, kind: str, message: str) -> bytes:
        return b"data: " + orjson.dumps({"error": {"message": message, "type": kind, "code": kind, "param": None}}) + b"\n\n"


def _sse(name: bytes, obj: dict) -> bytes:
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
        msg = {
            "id": self._id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": u,
        }
        return _sse(b"message_start", {"type": "message_start", "message": msg})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _sse(b"content_block_stop", {"type": "content_block_stop", "index": self._next - 1})

    def _begin(self, upstream_block: int, block: dict) -> bytes:
        out = self._close()
        self._open = upstream_block
        out += _sse(b"content_block_start", {"type": "content_block_start", "index": self._next, "content_block": block})
        self._next += 1
        if not self._pinged:
            self._pinged = True
            out += b'event: ping\ndata: {"type": "ping"}\n\n'
        return out

    def event(self, ev: tuple) -> bytes:
        kind = ev[0]
        if kind == "text":
            out = b"" if self._open == ev[1] else self._begin(ev[1], {"type": "text", "text": ""})
            return out + _sse(b"content_block_delta", {"type": "content_block_delta", "index": self._next - 1, "delta": {"type": "text_delta", "text": ev[2]}})
        if kind == "tool_delta":
            return _sse(b"content_block_delta", {"type": "content_block_delta", "index": self._next - 1, "delta": {"type": "input_json_delta", "partial_json": ev[2]}})
        if kind == "tool_start":
            return self._begin(ev[1], {"type": "tool_use", "id": ev[2], "name": ev[3], "input": {}})
        if kind == "finish":
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
        self.blocks: list[dict] = []
        self._index: dict[int, dict] = {}
        self.stop: tuple[str, str | None] = ("end_turn", None)

    def event(self, ev: tuple) -> bytes:
        kind = ev[0]
        if kind == "text":
            block = self._index.get(ev[1])
            if block is None:
                block = self._index[ev[1]] = {"type": "text", "text": ""}
                self.blocks.append(block)
            block["text"] += ev[2]
        elif kind == "tool_start":
            block = self._index[ev[1]] = {"type": "tool_use", "id": ev[2], "name": ev[3], "json": ""}
            self.blocks.append(block)
        elif kind == "tool_delta":
            block = self._index.get(ev[1])
            if block is not None:
                block["json"] += ev[2]
        elif kind == "finish":
            self.stop = (ev[1], ev[2])
        return b""

    def _tool_input(self, block: dict) -> Any:
        try:
            return orjson.loads(block["json"] or "{}")
        except orjson.JSONDecodeError:
            return {}

    def anthropic_body(self, model: str, usage: Usage) -> dict:
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

    def openai_body(self, model: str, usage: Usage) -> dict:
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


def openai_usage(u: Usage) -> dict:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.prompt_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
    }


def anthropic_usage(u: Usage) -> dict:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_5m, "ephemeral_1h_input_tokens": u.cache_write_1h},
        "output_tokens": u.output_tokens,
    }


# --------------------------------------------------------------------------- errors


def error_body(protocol: str, kind: str, message: str) -> dict:
    if protocol == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": kind, "param": None}}


def upstream_error_message(kind: str, raw: bytes) -> tuple[str, str]:
    """(type, message) from an upstream error body of either protocol (best effort)."""
    try:
        obj = orjson.loads(raw)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict):
            return str(err.get("type") or err.get("code") or "api_error"), str(err.get("message") or "")
        if isinstance(obj, dict) and "message" in obj:
            return str(obj.get("type") or "api_error"), str(obj["message"])
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return "api_error", raw[:300].decode("utf-8", "replace")
