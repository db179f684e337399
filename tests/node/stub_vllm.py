"""A loopback stand-in for the two vLLM endpoints the node agent reads for demand: /metrics
(the queue gauges and the finished-requests counter, in vLLM's Prometheus names) and /load.

The test sets what the server reports; nothing here decides anything, so a test's timing is
exactly the order of its own reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from agentdeploy.serving.node.vllm_client import FINISHED, RUNNING, WAITING


@dataclass
class StubVllm:
    waiting: int = 0
    running: int = 0
    finished: int = 0
    #: None: no /load route (vLLM without --enable-server-load-tracking).
    server_load: int | None = 0
    runner: web.AppRunner | None = None
    url: str = ""

    def request_came_and_went(self) -> None:
        """A request that arrived and finished between two readings: only the counter moves."""
        self.finished += 1

    async def _metrics(self, _: web.Request) -> web.Response:
        text = (f'{WAITING}{{model_name="m"}} {self.waiting}\n{RUNNING}{{model_name="m"}} {self.running}\n'
                f'{FINISHED}{{finished_reason="stop",model_name="m"}} {self.finished}\n'
                f'{FINISHED}{{finished_reason="length",model_name="m"}} 0\n')
        return web.Response(text=text)

    async def _load(self, _: web.Request) -> web.Response:
        if self.server_load is None:
            return web.Response(status=404)
        return web.json_response({"server_load": self.server_load})

    async def start(self) -> StubVllm:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/load", self._load)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
