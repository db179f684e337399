"""Text read from a user's file that may end up in a rendered one, and how messages quote it.

Strings from the decision file and the catalog reach node env files, systemd units, cloud-init
and the gateway's config (agent names, model ids, Hugging Face repos, instance types, emails,
the region). A newline there starts a new `KEY=value` line or YAML key, so control characters
are refused everywhere before validation; free-text fields (a description, a source's notes)
may span lines. Messages quote values clipped, so a multi-megabyte value is not echoed whole.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

#: Keys whose values are prose, never written into a rendered file: they may hold tabs and newlines.
FREE_TEXT_KEYS = frozenset({"description", "notes", "source"})
#: Control (Cc), format (Cf: zero-width, bidi overrides) and line/paragraph separators (Zl, Zp).
_REFUSED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_PROSE_ALLOWED = frozenset("\t\n")
#: Unicode gives C0/C1 controls no name; these are the ones that split or hide lines.
_CONTROL_NAMES = {"\n": "line feed", "\r": "carriage return", "\t": "tab", "\x00": "NUL", "\x1b": "escape",
                  "\x85": "next line", "\x0b": "vertical tab", "\x0c": "form feed", "\x7f": "delete"}


def bad_character(text: str, prose: bool = False) -> str | None:
    """The first refused character of `text`, described ('U+000A LINE FEED'), or None."""
    if text.isprintable():  # fast path: every refused category is non-printable
        return None
    for ch in text:
        if prose and ch in _PROSE_ALLOWED:
            continue
        if unicodedata.category(ch) in _REFUSED:
            return f"U+{ord(ch):04X} ({unicodedata.name(ch, '') or _CONTROL_NAMES.get(ch, 'a control character')})"
    return None


def control_characters(data: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(location, described character) for every key and string value holding a refused character."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str):
                found = bad_character(key)
                if found:
                    yield loc + (key,), f"the key contains {found}"
                    continue
            if isinstance(value, str):
                found = bad_character(value, prose=key in FREE_TEXT_KEYS)
                if found:
                    yield loc + (key,), f"contains {found}"
            else:
                yield from control_characters(value, loc + (key,))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if isinstance(item, str):
                found = bad_character(item)
                if found:
                    yield loc + (i,), f"contains {found}"
            else:
                yield from control_characters(item, loc + (i,))


def clip(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters with the length said."""
    shown = repr(value)
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(shown):,} characters)"


def dotted(loc: tuple[Any, ...], limit: int = 60) -> str:
    """A field path for a message, each part clipped (a key can be as long as the file)."""
    return ".".join(_part(str(p), limit) for p in loc) or "(top level)"


def _part(text: str, limit: int) -> str:
    shown = text if text.isprintable() else repr(text)  # a key with a newline must not break the line
    return shown if len(shown) <= limit else shown[:limit] + "..."
