"""Break-even volume: where the self-hosted fleet's monthly cost meets the API's.

The API curve is linear in volume; the fleet's is a step function (whole replicas) plus the
fallback share. The break-even is the smallest volume at which the fleet costs no more than the
API, found on a geometric scan and refined by bisection inside the first bracket.
"""

from __future__ import annotations

from collections.abc import Callable

Curve = Callable[[float], float]


def break_even(api: Curve, gpu: Curve, lo: float = 10.0, hi: float = 1e9, tolerance: float = 1e-4) -> float | None:
    if gpu(lo) <= api(lo):
        return lo
    prev = lo
    v = lo
    while v < hi:
        v = min(hi, v * 1.5)
        if gpu(v) <= api(v):
            a, b = prev, v
            while (b - a) / b > tolerance:
                mid = (a + b) / 2
                if gpu(mid) <= api(mid):
                    b = mid
                else:
                    a = mid
            return b
        prev = v
    return None
