"""The window every number read from a decision file or catalog must sit in.

Each field has its own bounds (a share is at most 1, a price at least 0), but a bound of `> 0`
still lets 5e-324 through, and dividing by it overflows to infinity (`active_hours_per_day:
5e-324` crashed fleet sizing; a subnormal speed would plan an infinite time). So every number is
also either zero or between a millionth and a billion-odd in size: far outside any real price,
speed, volume or limit, and far inside what the planner's arithmetic keeps finite.
"""

from __future__ import annotations

from typing import Any

#: The smallest non-zero magnitude any figure may have (the catalog's smallest is ~0.004).
MIN_MAGNITUDE = 1e-6
#: The largest (the decision file's largest bound is 1e10 conversations a month).
MAX_MAGNITUDE = 1e12


def out_of_window(value: Any) -> str | None:
    """Why `value` (or a number inside a list or dict value) is outside the window, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        size = abs(value)
        if size != 0 and size < MIN_MAGNITUDE:
            return f"{value!r} is too small to mean anything: use 0 or at least {MIN_MAGNITUDE:g}"
        if size > MAX_MAGNITUDE:
            return f"{value:.3g} is too large: at most {MAX_MAGNITUDE:g}"
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            found = out_of_window(item)
            if found:
                return found
    if isinstance(value, dict):
        for item in value.values():
            found = out_of_window(item)
            if found:
                return found
    return None
