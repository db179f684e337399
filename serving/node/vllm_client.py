"""What the node agent asks the local vLLM server: is it healthy, how loaded is it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiohttp

from agentdeploy.serving.prometheus import sum_samples

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
#: Requests the engine finished (a counter, summed over its `finished_reason` labels): a request
#: that starts and ends between two readings of the gauges still moves it.
FINISHED = "vllm:request_success_total"

Health = Literal["ok", "unhealthy", "down"]
#: vLLM refuses connections (exited) / answered too slowly or not with metrics (busy, wedged).
Unread = Literal["down", "unknown"]


@dataclass(frozen=True)
class Load:
    waiting: float
    running: float
    #: vLLM's finished-requests counter at this reading; None where the server does not export it.
    finished: float | None = None

    @property
    def in_flight(self) -> int:
        return int(round(self.waiting + self.running))

    @property
    def demand(self) -> float:
        return self.waiting + self.running


class VllmClient:
    """Reads /health and /metrics. Under load on a busy host both can take seconds to answer
    (the API server shares the CPU with the engine), so slow is reported as slow, never as
    down: only a refused connection means vLLM is gone."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float = 5.0):
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._load_endpoint = True  # until the server shows it has no /load

    async def health(self) -> Health:
        """ok (200), unhealthy (answers otherwise, or too slowly), down (refuses connections)."""
        try:
            async with self._session.get(f"{self._base}/health", timeout=self._timeout) as resp:
                return "ok" if resp.status == 200 else "unhealthy"
        except aiohttp.ClientConnectorError:
            return "down"
        except (aiohttp.ClientError, TimeoutError):
            return "unhealthy"

    async def load(self) -> Load | Unread:
        """Queue depth and running requests from /metrics, or why they could not be read."""
        try:
            async with self._session.get(f"{self._base}/metrics", timeout=self._timeout) as resp:
                if resp.status != 200:
                    return "unknown"
                text = await resp.text()
        except aiohttp.ClientConnectorError:
            return "down"
        except (aiohttp.ClientError, TimeoutError):
            return "unknown"
        values = sum_samples(text, (WAITING, RUNNING, FINISHED))
        if WAITING not in values or RUNNING not in values:
            return "unknown"
        return Load(waiting=values[WAITING], running=values[RUNNING], finished=values.get(FINISHED))

    async def server_load(self) -> int | Unread | None:
        """HTTP requests the server holds right now (`/load`, vLLM's
        `--enable-server-load-tracking`), or None where it does not serve that count.

        It counts a request from arrival to its last byte: one still queued in the front end,
        and a stream whose generation is done but whose final chunks are still going out.
        """
        if not self._load_endpoint:
            return None
        try:
            async with self._session.get(f"{self._base}/load", timeout=self._timeout) as resp:
                if resp.status == 200:
                    body = await resp.json(content_type=None)
                    load = body.get("server_load") if isinstance(body, dict) else None
                    if isinstance(load, int):
                        return max(0, load)
                if resp.status in (404, 500):  # no route, or tracking not enabled
                    self._load_endpoint = False
        except aiohttp.ClientConnectorError:
            return "down"
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return "unknown"
        return None

    async def in_flight(self) -> int | Unread:
        """Requests the server is still answering: `/load` where served, else the running +
        waiting gauges."""
        served = await self.server_load()
        if served is not None:
            return served
        load = await self.load()
        return load if isinstance(load, str) else load.in_flight
