"""The Message Batches API's limits on one batch, and splitting a large input within them.

"A Message Batch is limited to either 100,000 Message requests or 256 MB in size, whichever is
reached first" (platform.claude.com/docs/en/build-with-claude/batch-processing, "Batch
limitations"; the same in the "Create a Message Batch" API reference, as of 2026-12).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from agentdeploy.serving.protocol.events import JsonObject

MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
#: `{"requests":[` ... `]}` around the requests.
_ENVELOPE = len(b'{"requests":[]}')


class TooLarge(ValueError):
    """One request alone is over the byte limit: no split can send it."""


def split(requests: Sequence[JsonObject], max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> list[list[JsonObject]]:
    """The requests in order, cut into as few batches as the limits allow (each non-empty)."""
    parts: list[list[JsonObject]] = []
    current: list[JsonObject] = []
    size = _ENVELOPE
    for i, req in enumerate(requests):
        n = len(orjson.dumps(req)) + 1  # the comma before it
        if _ENVELOPE + n > max_bytes:
            raise TooLarge(f"requests.{i}: {n} bytes alone is over the Message Batches limit of {max_bytes} bytes per batch")
        if current and (len(current) >= max_requests or size + n > max_bytes):
            parts.append(current)
            current, size = [], _ENVELOPE
        current.append(req)
        size += n
    if current:
        parts.append(current)
    return parts
