"""A client request rewritten for the upstream's protocol.

OpenAI client to Anthropic upstream (and back) is a real translation: system prompts, tool
calls and tool results live in different places, and Anthropic wants alternating roles. Same
protocol both sides is a pass-through with the gateway's model and limits put in. Every
rewritten request asks the upstream to stream (see the package docstring for why).
"""

from __future__ import annotations

from typing import Any

import orjson

from agentdeploy.serving.protocol.events import ApiKind, JsonObject, new_id


class TranslationError(ValueError):
    """The request cannot be expressed for the target protocol (answered with a 400)."""



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


def _openai_parts_to_blocks(content: Any) -> list[JsonObject]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise TranslationError("message content must be a string or a list of parts")
    blocks: list[JsonObject] = []
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


def _append(messages: list[JsonObject], role: str, blocks: list[JsonObject]) -> None:
    """Anthropic wants alternating roles: merge consecutive messages of one role."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def openai_to_anthropic_request(body: JsonObject, model: str, max_tokens: int) -> JsonObject:
    system: list[str] = []
    messages: list[JsonObject] = []
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


def anthropic_to_openai_request(body: JsonObject, model: str, max_tokens: int) -> JsonObject:
    msgs: list[JsonObject] = []
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
        calls: list[JsonObject] = []
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


def _strip_cache_control(messages: list[JsonObject]) -> list[JsonObject]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content):
            m = dict(m)
            m["content"] = [{k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p for p in content]
        out.append(m)
    return out


def openai_passthrough_request(body: JsonObject, model: str, max_tokens: int) -> JsonObject:
    """OpenAI client to OpenAI-compatible upstream: same shape, our model/limits, usage on."""
    out = dict(body)
    out.pop("max_completion_tokens", None)
    out["model"] = model
    out["max_tokens"] = max_tokens
    out["stream"] = True
    out["stream_options"] = {"include_usage": True}
    out["messages"] = _strip_cache_control(body.get("messages") or [])
    return out


def anthropic_passthrough_request(body: JsonObject, model: str, max_tokens: int) -> JsonObject:
    out = dict(body)
    out["model"] = model
    out["max_tokens"] = max_tokens
    out["stream"] = True
    return out


def upstream_request(client_protocol: ApiKind, upstream_kind: ApiKind, body: JsonObject, model: str, max_tokens: int) -> JsonObject:
    if client_protocol == "openai":
        if upstream_kind == "openai":
            return openai_passthrough_request(body, model, max_tokens)
        return openai_to_anthropic_request(body, model, max_tokens)
    if upstream_kind == "anthropic":
        return anthropic_passthrough_request(body, model, max_tokens)
    return anthropic_to_openai_request(body, model, max_tokens)
