"""The canonical events an upstream stream is parsed into, whichever protocol it speaks.

Events are tuples, cheapest to build on the hot path; `Event` names each shape:

  ("start", id, model)                    upstream stream opened
  ("text", block, text)                   text delta for upstream block index `block`
  ("tool_start", block, call_id, name)    a tool call begins
  ("tool_delta", block, partial_json)     tool-call arguments, streamed
  ("finish", stop_reason, stop_sequence)  Anthropic stop reason vocabulary
  ("error", type, message)                in-band error from the upstream
  ("done",)                               the upstream ended the stream properly

Usage is not an event: each parser keeps a running `Usage` the caller reads at the end.
Compare `ev[0]` directly (not through a local) where a later index depends on the kind: that
is what lets the type checker narrow the tuple.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Literal, TypeAlias

#: The two API dialects: what a client speaks, and what an upstream speaks.
ApiKind: TypeAlias = Literal["openai", "anthropic"]
#: A JSON object as the request path handles it (parsed by orjson, never validated whole).
JsonObject: TypeAlias = dict[str, Any]

StartEvent: TypeAlias = tuple[Literal["start"], Any, Any]
TextEvent: TypeAlias = tuple[Literal["text"], int, str]
ToolStartEvent: TypeAlias = tuple[Literal["tool_start"], int, str, str]
ToolDeltaEvent: TypeAlias = tuple[Literal["tool_delta"], int, str]
FinishEvent: TypeAlias = tuple[Literal["finish"], str, str | None]
ErrorEvent: TypeAlias = tuple[Literal["error"], str, str]
DoneEvent: TypeAlias = tuple[Literal["done"]]
Event: TypeAlias = StartEvent | TextEvent | ToolStartEvent | ToolDeltaEvent | FinishEvent | ErrorEvent | DoneEvent

DONE: DoneEvent = ("done",)

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

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}{time.time_ns():x}{next(_ids):x}"
