"""Per-agent spend budgets that hold under concurrency: reserve at admission, settle after.

Admission reserves the request's worst-case cost (estimated prompt tokens at the highest
input price plus max_tokens at the output price, over every upstream the request may end on)
against `spent + open reservations`; the answer settles the reservation to what the usage
actually cost. A burst of concurrent streams therefore cannot overshoot: each one holds its
worst case until it finishes. Amounts are integer micro-dollars so Redis can add them
atomically. One window per calendar month (UTC), matching the plan's monthly budget.

Backends: in memory (one gateway replica; a single event loop makes check-and-add atomic) and
Redis (several replicas; a Lua script makes check-and-add atomic).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable
from typing import Any, Protocol

MICRO = 1_000_000


def window_key(prefix: str, stack: str, agent: str, now: float | None = None) -> str:
    return f"{prefix}:{stack}:{agent}:{time.strftime('%Y-%m', time.gmtime(now or time.time()))}"


def to_micro(usd: float) -> int:
    # Round up: a budget check must never under-count.
    return math.ceil(usd * MICRO - 1e-9)


class BudgetStore(Protocol):
    async def reserve(self, key: str, amount: int, limit: int | None) -> bool: ...
    async def settle(self, key: str, reserved: int, actual: int) -> None: ...
    async def committed(self, key: str) -> int: ...
    async def spent(self, key: str) -> int: ...
    async def close(self) -> None: ...


class MemoryBudgetStore:
    def __init__(self) -> None:
        self._committed: dict[str, int] = {}
        self._spent: dict[str, int] = {}

    async def reserve(self, key: str, amount: int, limit: int | None) -> bool:
        cur = self._committed.get(key, 0)
        if limit is not None and cur + amount > limit:
            return False
        self._committed[key] = cur + amount
        return True

    async def settle(self, key: str, reserved: int, actual: int) -> None:
        self._committed[key] = self._committed.get(key, 0) + actual - reserved
        self._spent[key] = self._spent.get(key, 0) + actual

    async def committed(self, key: str) -> int:
        return self._committed.get(key, 0)

    async def spent(self, key: str) -> int:
        return self._spent.get(key, 0)

    async def close(self) -> None:
        return None


_RESERVE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and cur + amount > limit then return 0 end
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

#: Keep a month's counters a little past the month.
TTL_S = 40 * 24 * 3600


class BudgetStoreUnavailable(Exception):
    """The shared budget store could not be reached: the caller decides to fail open or closed."""


class RedisBudgetStore:
    """Budget counters in Redis, shared by every gateway replica (an atomic Lua reservation).

    Redis errors surface as `BudgetStoreUnavailable`, never as the client's errors: connect and
    command timeouts are short so an unreachable Redis costs a request milliseconds, not seconds.
    """

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        self._errors = (RedisError, OSError, TimeoutError)
        self._redis = aioredis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._reserve = self._redis.register_script(_RESERVE)

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except self._errors as exc:
            raise BudgetStoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def reserve(self, key: str, amount: int, limit: int | None) -> bool:
        return bool(await self._call(self._reserve(keys=[key], args=[amount, -1 if limit is None else limit, TTL_S])))

    async def settle(self, key: str, reserved: int, actual: int) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.incrby(key, actual - reserved)
        pipe.incrby(key + ":spent", actual)
        pipe.expire(key + ":spent", TTL_S)
        await self._call(pipe.execute())

    async def committed(self, key: str) -> int:
        return int(await self._call(self._redis.get(key)) or 0)

    async def spent(self, key: str) -> int:
        return int(await self._call(self._redis.get(key + ":spent")) or 0)

    async def close(self) -> None:
        await self._redis.aclose()
