"""Where the batch room keeps its batches: shared by every gateway replica, surviving restarts.

A batch outlives the request that made it (up to 24 h upstream, results for days after), and
the provisioned gateway runs as several replicas behind a load balancer: a batch created on
one replica is read, settled and listed on any other, and a restarted replica picks up the
batches it had not settled. So the room's records (the Message Batch record with its parts,
reservation and settled flag; the OpenAI shape's files and batches) live where the budgets live:
in Redis when `budget_store.backend` is redis, in this process otherwise (one replica).

Settlement happens exactly once across replicas: one Lua script sets the batch's settled flag
with SET NX and, only if it was set, moves the budget from reserved to actual in the same
atomic step (the key layout of serving/budget.py's RedisBudgetStore: the window key counts
committed micro-USD, `<key>:spent` what was spent). A replica that loses the race, or crashes
anywhere, cannot settle twice nor leave the flag set without the money moved.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from agentdeploy.serving.budget import TTL_S, BudgetStore
from agentdeploy.serving.protocol.events import JsonObject

#: How long the gateway keeps a batch's record and files: the API keeps results 29 days after
#: creation (platform.claude.com batch-processing guide, "Batch limitations", as of 2026-12); a day past that.
RETENTION_S = 30 * 24 * 3600
#: The Message Batch record's kind among the stored items.
RECORD = "msgbatch"


class BatchStoreUnavailable(Exception):
    """The shared store could not be reached: the batch endpoints answer 503, retry later."""


@dataclass
class BatchRecord:
    id: str
    agent: str
    model: str
    upstream: str
    parts: list[str]
    requests: int
    #: The budget window the worst case was reserved in (None: the agent has no budget).
    key: str | None
    reserved: int
    created: float = field(default_factory=time.time)
    settled: bool = False
    cost_micro: int = 0

    def doc(self) -> JsonObject:
        out = asdict(self)
        out.pop("settled")
        out.pop("cost_micro")
        return out

    @classmethod
    def of(cls, doc: JsonObject, settled_cost: int | None) -> BatchRecord:
        rec = cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})
        rec.settled, rec.cost_micro = settled_cost is not None, settled_cost or 0
        return rec


class BatchStore(Protocol):
    """Items are JSON documents by (kind, id), indexed by owner (newest first); a file's bytes
    travel beside its document. `settle_once` is the only write that moves money."""

    async def put(self, kind: str, item_id: str, owner: str, doc: JsonObject, data: bytes | None = None) -> None: ...
    async def get(self, kind: str, item_id: str) -> JsonObject | None: ...
    async def data(self, kind: str, item_id: str) -> bytes | None: ...
    async def ids(self, kind: str, owner: str | None) -> list[str]: ...
    async def settled(self, batch_id: str) -> int | None: ...
    async def settle_once(self, rec: BatchRecord, actual: int) -> bool: ...
    async def close(self) -> None: ...


async def load_record(store: BatchStore, batch_id: str) -> BatchRecord | None:
    doc = await store.get(RECORD, batch_id)
    return None if doc is None else BatchRecord.of(doc, await store.settled(batch_id))


async def save_record(store: BatchStore, rec: BatchRecord) -> None:
    await store.put(RECORD, rec.id, rec.agent, rec.doc())


class MemoryBatchStore:
    """One replica: a dict, settled under the event loop (no await between check and mark)."""

    def __init__(self, budget: BudgetStore) -> None:
        self.budget = budget
        self._docs: dict[tuple[str, str], tuple[str, JsonObject, bytes | None]] = {}
        self._settled: dict[str, int] = {}

    async def put(self, kind: str, item_id: str, owner: str, doc: JsonObject, data: bytes | None = None) -> None:
        self._docs[(kind, item_id)] = (owner, doc, data)

    async def get(self, kind: str, item_id: str) -> JsonObject | None:
        found = self._docs.get((kind, item_id))
        return None if found is None else found[1]

    async def data(self, kind: str, item_id: str) -> bytes | None:
        found = self._docs.get((kind, item_id))
        return None if found is None else found[2]

    async def ids(self, kind: str, owner: str | None) -> list[str]:
        return [i for (k, i), (o, _, _) in reversed(self._docs.items()) if k == kind and owner in (None, o)]

    async def settled(self, batch_id: str) -> int | None:
        return self._settled.get(batch_id)

    async def settle_once(self, rec: BatchRecord, actual: int) -> bool:
        if rec.id in self._settled:
            return False
        if rec.key is not None:
            await self.budget.settle(rec.key, rec.reserved, actual)
        self._settled[rec.id] = actual
        return True

    async def close(self) -> None:
        return None


_SETTLE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then return 0 end
if #KEYS == 3 then
  redis.call('INCRBY', KEYS[2], tonumber(ARGV[1]) - tonumber(ARGV[2]))
  redis.call('INCRBY', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
"""


class RedisBatchStore:
    """Several replicas: items under `<budget key_prefix>:<stack>:batches:`, kept RETENTION_S.

    Its own connection (longer timeouts than the budget's: a batch file may be tens of MiB and
    no request waits on it token by token); Redis errors surface as BatchStoreUnavailable.
    """

    def __init__(self, url: str, prefix: str, timeout_s: float = 5.0) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        self._errors = (RedisError, OSError, TimeoutError)
        self._redis = aioredis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._settle = self._redis.register_script(_SETTLE)
        self.base = prefix + ":batches"

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except self._errors as exc:
            raise BatchStoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def _key(self, kind: str, item_id: str) -> str:
        return f"{self.base}:{kind}:{item_id}"

    def _index(self, kind: str, owner: str | None) -> str:
        return f"{self.base}:{kind}:index" + ("" if owner is None else f":{owner}")

    async def put(self, kind: str, item_id: str, owner: str, doc: JsonObject, data: bytes | None = None) -> None:
        now = time.time()
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key(kind, item_id), orjson.dumps({"owner": owner, "doc": doc}), ex=RETENTION_S)
        if data is not None:
            pipe.set(self._key(kind, item_id) + ":data", data, ex=RETENTION_S)
        for index in (self._index(kind, None), self._index(kind, owner)):
            pipe.zadd(index, {item_id: now})
            pipe.zremrangebyscore(index, "-inf", now - RETENTION_S)  # what expired leaves the index too
            pipe.expire(index, RETENTION_S)
        await self._call(pipe.execute())

    async def get(self, kind: str, item_id: str) -> JsonObject | None:
        raw = await self._call(self._redis.get(self._key(kind, item_id)))
        if raw is None:
            return None
        doc: JsonObject = orjson.loads(raw)["doc"]
        return doc

    async def data(self, kind: str, item_id: str) -> bytes | None:
        raw = await self._call(self._redis.get(self._key(kind, item_id) + ":data"))
        return None if raw is None else bytes(raw)

    async def ids(self, kind: str, owner: str | None) -> list[str]:
        raw = await self._call(self._redis.zrevrange(self._index(kind, owner), 0, -1))
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def settled(self, batch_id: str) -> int | None:
        raw = await self._call(self._redis.get(self._key(RECORD, batch_id) + ":settled"))
        return None if raw is None else int(raw)

    async def settle_once(self, rec: BatchRecord, actual: int) -> bool:
        keys = [self._key(RECORD, rec.id) + ":settled"]
        if rec.key is not None:
            keys += [rec.key, rec.key + ":spent"]
        won = await self._call(self._settle(keys=keys, args=[actual, rec.reserved, RETENTION_S, TTL_S]))
        return bool(won)

    async def close(self) -> None:
        await self._redis.aclose()
