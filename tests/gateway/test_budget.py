"""serving/budget.py: reservations that hold under concurrency (the in-memory store; Redis is
exercised end to end in test_cache_budget.py)."""

import asyncio

from agentdeploy.serving.budget import MemoryBudgetStore, to_micro


def test_memory_budget_reserves_worst_case_and_settles_to_actual():
    async def run():
        store = MemoryBudgetStore()
        limit = to_micro(1.0)
        assert await store.reserve("k", to_micro(0.6), limit)
        assert not await store.reserve("k", to_micro(0.6), limit)  # would overshoot while the first is open
        await store.settle("k", to_micro(0.6), to_micro(0.1))
        assert await store.reserve("k", to_micro(0.6), limit)
        assert await store.spent("k") == to_micro(0.1)
        assert await store.committed("k") == to_micro(0.7)
        assert await store.reserve("k", to_micro(100), None)  # alert policy: never refused

    asyncio.run(run())
