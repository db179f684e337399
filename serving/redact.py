"""Secret values never leave the process: every log line, error message and metrics page
passes through the redactor, which knows the values the gateway loaded (upstream keys, the
Redis URL) and replaces them with `[REDACTED]`."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[REDACTED]"


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        self._values.update(v for v in values if v and len(v) >= 6)

    def text(self, s: str) -> str:
        for v in self._values:
            if v in s:
                s = s.replace(v, MASK)
        return s

    def bytes(self, b: bytes) -> bytes:
        for v in self._values:
            vb = v.encode()
            if vb in b:
                b = b.replace(vb, MASK.encode())
        return b
