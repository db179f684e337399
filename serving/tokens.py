"""A cheap, deterministic token estimate shared by the gateway and the Claude emulator.

The gateway needs token counts before the upstream answers (budget reservation, the cache
minimum check); a real tokenizer per request would cost more than the whole gateway hop.
About four bytes per token is the usual figure for English with Claude-family tokenizers;
the emulator counts with the same rule so tests can predict its usage exactly.
"""

from __future__ import annotations

from typing import Any

#: Tokens charged per message for role/turn framing (the real API adds a few as well).
MESSAGE_OVERHEAD = 3


def text_tokens(text: str) -> int:
    """Tokens in one piece of text: ceil(utf-8 bytes / 4), at least 1 for non-empty text."""
    if not text:
        return 0
    return (len(text.encode("utf-8")) + 3) // 4


def content_tokens(content: Any) -> int:
    """Tokens in an Anthropic/OpenAI content value: a string, a list of blocks, or a block."""
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(content_tokens(c) for c in content)
    if isinstance(content, dict):
        kind = content.get("type")
        if kind == "text":
            return text_tokens(content.get("text", ""))
        if kind == "tool_use":
            return text_tokens(content.get("name", "")) + text_tokens(_json(content.get("input", {})))
        if kind == "tool_result":
            return content_tokens(content.get("content"))
        if kind == "image":
            return 1500
        # Tool definitions and anything else: count their JSON text.
        return text_tokens(_json({k: v for k, v in content.items() if k != "cache_control"}))
    return text_tokens(str(content))


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()
