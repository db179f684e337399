"""Break-even volume: where the self-hosted fleet's monthly cost meets the API's.

The API curve is linear in volume; the fleet's is a step function (whole replicas) plus the
fallback share. The break-even is the smallest volume at which the fleet costs no more than the
API, found on a geometric scan and refined by bisection inside the first bracket.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Curve = Callable[[float], float]


def break_even(api: Curve, gpu: Curve, lo: float = 10.0, hi: float = 1e9, tolerance: float = 1e-4, gpu_floor: float = 0.0,
               api_rate: float = math.inf) -> float | None:
    """`gpu_floor`, a bound the fleet never costs less than, skips pricing the fleet at volumes
    whose API bill is under it (the fleet cannot be cheaper there); `api_rate`, a bound on what
    one conversation costs on the API, skips pricing the API too where volume x that rate is
    under the floor: the same points, the same answer."""

    def cheaper(v: float) -> bool:
        if v * api_rate * (1 + 1e-9) + 1e-6 < gpu_floor:
            return False  # the API bill at v is surely under the floor
        api_v = api(v)
        return gpu_floor <= api_v and gpu(v) <= api_v

    if cheaper(lo):
        return lo
    prev = lo
    v = lo
    while v < hi:
        v = min(hi, v * 1.5)
        if cheaper(v):
            a, b = prev, v
            while (b - a) / b > tolerance:
                mid = (a + b) / 2
                if cheaper(mid):
                    b = mid
                else:
                    a = mid
            return b
        prev = v
    return None
