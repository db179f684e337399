"""The Message Batches API, as the gateway calls it with an agent's upstream key."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from agentdeploy.serving.protocol.events import JsonObject
from agentdeploy.serving.upstreams import Upstream

PATH = "/v1/messages/batches"


class UpstreamError(Exception):
    """The API answered with an error (or not at all): status and its error body to pass on."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class BatchesClient:
    """One Claude upstream's Message Batches endpoints."""

    def __init__(self, session: aiohttp.ClientSession, upstream: Upstream, timeout_s: float = 120.0) -> None:
        self.session = session
        self.base = (upstream.spec.base_url or "").rstrip("/") + PATH
        self.headers = {k: v for k, v in upstream.headers.items()}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=upstream.connect_timeout)

    async def _call(self, method: str, url: str, body: JsonObject | None = None) -> bytes:
        data = orjson.dumps(body) if body is not None else None
        try:
            async with self.session.request(method, url, data=data, headers=self.headers, timeout=self.timeout) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    kind, message = "api_error", raw[:500].decode(errors="replace")
                    try:
                        err = orjson.loads(raw).get("error") or {}
                        kind, message = str(err.get("type", kind)), str(err.get("message", message))
                    except (ValueError, AttributeError):
                        pass
                    raise UpstreamError(resp.status, kind, message)
                return raw
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(502, "api_error", f"Message Batches API unreachable: {type(exc).__name__}") from exc

    async def create(self, requests: list[JsonObject]) -> JsonObject:
        out: Any = orjson.loads(await self._call("POST", self.base, {"requests": requests}))
        return dict(out)

    async def retrieve(self, batch_id: str) -> JsonObject:
        out: Any = orjson.loads(await self._call("GET", f"{self.base}/{batch_id}"))
        return dict(out)

    async def cancel(self, batch_id: str) -> JsonObject:
        out: Any = orjson.loads(await self._call("POST", f"{self.base}/{batch_id}/cancel"))
        return dict(out)

    async def results(self, batch_id: str) -> list[JsonObject]:
        raw = await self._call("GET", f"{self.base}/{batch_id}/results")
        return [dict(orjson.loads(line)) for line in raw.splitlines() if line.strip()]
