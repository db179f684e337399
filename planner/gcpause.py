"""The cyclic garbage collector paused while the planner builds objects that form no cycles.

Reading a decision file and planning it allocate hundreds of thousands of small objects (nodes,
marks, cost items) that all stay alive until the step ends, none in a reference cycle. Each
allocation burst triggers collections that walk every live object, and again as the heap grows:
on 1,000 agents that was half the reading time and a fifth of the planning (bench/RESULTS.md).
The collector's previous state is restored on the way out, so a caller that disabled it keeps
it disabled, and cycles made meanwhile are collected by the next collection after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
