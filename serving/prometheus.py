"""Read gauges and counters from Prometheus text exposition (what vLLM's /metrics serves), pure.

One parser for the gateway (replica load, queue, finish rate) and the node agent (demand).
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def sum_samples(text: str, names: Iterable[str]) -> dict[str, float]:
    """Sum each named metric over all its label sets (several models or engines on one server).

    Names not present are absent from the result (not 0): a missing gauge is not an idle server.
    """
    wanted = set(names)
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name = line[: line.index("{")]
            rest = line[line.rindex("}") + 1 :]
        else:
            name, _, rest = line.partition(" ")
        if name not in wanted:
            continue
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        totals[name] = totals.get(name, 0.0) + value
    return totals
