"""Prompt-cache breakpoints for Claude upstreams, placed where the plan says they pay.

The plan names the levels ("tools", "system", "conversation"); each becomes one
`cache_control` on the last block of that level, but only when the prefix up to it reaches
the model's minimum cacheable length (below it the API caches nothing, silently) and only
while the request stays within the API's limit of 4 breakpoints (the client's own count).
OpenAI-compatible upstreams (vLLM) get none: their prefix caching is automatic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentdeploy.serving.tokens import content_tokens

MAX_BREAKPOINTS = 4


def _marks(body: dict[str, Any]) -> int:
    n = sum(1 for t in body.get("tools") or () if isinstance(t, dict) and "cache_control" in t)
    system = body.get("system")
    if isinstance(system, list):
        n += sum(1 for b in system if isinstance(b, dict) and "cache_control" in b)
    for m in body.get("messages") or ():
        c = m.get("content")
        if isinstance(c, list):
            n += sum(1 for b in c if isinstance(b, dict) and "cache_control" in b)
    return n


def _marker(ttl: str | None) -> dict[str, Any]:
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def place_breakpoints(body: dict[str, Any], levels: Sequence[str], ttl: str | None, min_tokens: int) -> dict[str, Any]:
    """A copy of an Anthropic request with the planned breakpoints added (the input is untouched)."""
    free = MAX_BREAKPOINTS - _marks(body)
    if free <= 0 or not levels:
        return body
    out = dict(body)
    marker = _marker(ttl)
    tools = body.get("tools") or []
    cum = sum(content_tokens(t) for t in tools)
    if "tools" in levels and tools and cum >= min_tokens and free > 0 and "cache_control" not in tools[-1]:
        out["tools"] = tools[:-1] + [{**tools[-1], "cache_control": marker}]
        free -= 1
    system = body.get("system")
    if system:
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
        cum += content_tokens(blocks)
        if "system" in levels and blocks and cum >= min_tokens and free > 0 and "cache_control" not in blocks[-1]:
            blocks[-1] = {**blocks[-1], "cache_control": marker}
            out["system"] = blocks
            free -= 1
    messages = body.get("messages") or []
    if "conversation" in levels and len(messages) >= 2 and free > 0:
        cum += sum(content_tokens(m.get("content")) for m in messages)
        last = messages[-1]
        content = last.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        if blocks and cum >= min_tokens and "cache_control" not in blocks[-1]:
            blocks[-1] = {**blocks[-1], "cache_control": marker}
            out["messages"] = messages[:-1] + [{**last, "content": blocks}]
    return out
