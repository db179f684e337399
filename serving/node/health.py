"""The node's HTTP face: /healthz for the target group and the gateway, /state for people.

/healthz answers from the agent's state without calling vLLM, so a load balancer's probe is
never slowed by a busy model server: 200 while serving and vLLM is healthy, 503 otherwise
(draining, stopping, vLLM down) — which is what takes the node out of rotation.
"""

from __future__ import annotations

from aiohttp import web

from agentdeploy.serving.node.agent import NodeState


def build_app(state: NodeState) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        body = {"status": "ok" if state.healthy else "unavailable", "phase": state.phase, "vllm": state.vllm}
        return web.json_response(body, status=200 if state.healthy else 503)

    async def state_view(_: web.Request) -> web.Response:
        return web.json_response(state.to_dict())

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/state", state_view)
    return app


async def start_health_server(state: NodeState, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
