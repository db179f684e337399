"""A small OpenAI-compatible server for gateway tests, with injectable misbehaviour.

Real vLLM is used wherever its own behaviour matters (tests/gateway/test_vllm_*.py); this
stand-in exists for what vLLM cannot be made to do on demand: malformed chunks, a missing
`[DONE]`, exact stalls, a chosen /metrics queue depth, 5xx on command.

Behaviour for the next requests is queued like the Claude emulator's faults:
status (message, error_type, code), ttft_s, stall_after/stall_s, malformed_after, cut_after, no_done, hang_end_s, tokens,
token_delay_s, tool_call {name, arguments}, times (default 1, -1 = always). `running`, `waiting` and `finish_rate` set what /metrics reports.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
from aiohttp import web

LOOPBACK = "127.0.0.1"


class OpenAIStandin:
    def __init__(self, model: str = "standin", api_key: str | None = None, serve_metrics: bool = True,
                 host: str = LOOPBACK) -> None:
        self.model = model
        #: Any 127.x.y.z address is loopback: discovered "nodes" each get their own (same port).
        self.host = host
        #: False: no /metrics route (404), like an OpenAI-compatible server that is not vLLM.
        self.serve_metrics = serve_metrics
        self.api_key = api_key
        self.faults: list[dict] = []
        self.requests: list[dict] = []
        self.tokens = 6
        self.token_delay_s = 0.0
        self.running = 0
        self.waiting = 0
        #: Requests/s the replica reports finishing (vllm:request_success_total grows at this rate);
        #: None: the counter is not exported at all.
        self.finish_rate: float | None = None
        self._born = time.monotonic()
        self.healthy = True
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control (thread-safe enough: GIL, list ops)
    def fault(self, **fault: Any) -> None:
        self.faults.append(fault)

    def _take(self) -> dict:
        if not self.faults:
            return {}
        f = self.faults[0]
        times = f.get("times", 1)
        if times == 1:
            self.faults.pop(0)
        elif times > 1:
            f["times"] = times - 1
        return f

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ server
    def start(self) -> OpenAIStandin:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self.chat)
            if self.serve_metrics:
                app.router.add_get("/metrics", self.metrics)
            app.router.add_get("/health", self.health)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port or 0, reuse_address=True)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            self._loop = loop
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=f"openai-standin-{self.model}")
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        if not self.healthy:
            return web.Response(status=503)
        text = (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{self.model}"}} {float(self.running)}\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="{self.model}"}} {float(self.waiting)}\n'
        )
        if self.finish_rate is not None:
            finished = self.finish_rate * (time.monotonic() - self._born)
            text += f'vllm:request_success_total{{finished_reason="stop",model_name="{self.model}"}} {finished}\n'
        return web.Response(text=text)

    def _chunk(self, cid: str, delta: dict, finish: str | None = None) -> bytes:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    async def _tool_call(self, request: web.Request, body: dict, call: dict) -> web.StreamResponse:
        """One function call, as OpenAI-compatible servers send it: id and name first, then the
        JSON arguments in pieces, then finish_reason "tool_calls"."""
        cid, call_id = f"chatcmpl-standin{time.time_ns()}", "call_standin1"
        args = orjson.dumps(call.get("arguments", {})).decode()
        usage = {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": call["name"], "arguments": args}}]}
            return web.json_response({"id": cid, "object": "chat.completion", "created": int(time.time()), "model": self.model,
                                      "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": usage})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        first = {"index": 0, "id": call_id, "type": "function", "function": {"name": call["name"], "arguments": ""}}
        await resp.write(self._chunk(cid, {"role": "assistant", "content": None, "tool_calls": [first]}))
        for piece in (args[: len(args) // 2], args[len(args) // 2:]):
            await resp.write(self._chunk(cid, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        await resp.write(self._chunk(cid, {}, "tool_calls"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + orjson.dumps({"id": cid, "object": "chat.completion.chunk", "created": 0, "model": self.model, "choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "invalid key", "type": "invalid_request_error"}}, status=401)
        body = orjson.loads(await request.read())
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        f = self._take()
        if f.get("delay_headers_s"):
            await asyncio.sleep(f["delay_headers_s"])
        if f.get("status"):
            msg = f.get("message", "injected failure")
            return web.json_response({"error": {"message": msg, "type": f.get("error_type", "server_error"), "code": f.get("code", f["status"])}}, status=f["status"])
        if f.get("tool_call"):
            return await self._tool_call(request, body, f["tool_call"])
        # vLLM's continuation of a final assistant message: the answer goes on from where that
        # message stops (the stand-in's answer is tok0 tok1 ..., so the prefix says where).
        start = 0
        msgs = body.get("messages") or []
        if body.get("continue_final_message"):
            if body.get("add_generation_prompt", True) or not msgs or msgs[-1].get("role") != "assistant":
                return web.json_response({"error": {"message": "continue_final_message needs add_generation_prompt false and a final assistant message",
                                                    "type": "BadRequestError", "code": 400}}, status=400)
            start = str(msgs[-1].get("content") or "").count("tok")
        total = int(f.get("tokens", self.tokens))
        n = max(0, min(total - start, int(body.get("max_tokens") or 16)))
        delay = float(f.get("token_delay_s", self.token_delay_s))
        cid = f"chatcmpl-standin{time.time_ns()}"
        words = [f"tok{i} " for i in range(start, start + n)]
        usage = {"prompt_tokens": 10 + start, "completion_tokens": n, "total_tokens": 10 + start + n}
        if not body.get("stream"):
            return web.json_response({"id": cid, "object": "chat.completion", "created": int(time.time()), "model": self.model,
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}], "usage": usage})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(self._chunk(cid, {"role": "assistant", "content": ""}))
        if f.get("ttft_s"):
            await asyncio.sleep(f["ttft_s"])
        for i, w in enumerate(words, 1):
            await resp.write(self._chunk(cid, {"content": w}))
            if f.get("malformed_after") == i:
                await resp.write(b'data: {"id": "x", "choices": [{"delta": {"content": "unterminated\n\n')
            if f.get("stall_after") == i:
                await asyncio.sleep(float(f.get("stall_s", 30)))
            if f.get("cut_after") == i:
                request.transport.close()
                return resp
            if delay:
                await asyncio.sleep(delay)
        await resp.write(self._chunk(cid, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + orjson.dumps({"id": cid, "object": "chat.completion.chunk", "created": 0, "model": self.model, "choices": [], "usage": usage}) + b"\n\n")
        if not f.get("no_done"):
            await resp.write(b"data: [DONE]\n\n")
        if f.get("hang_end_s"):
            await asyncio.sleep(f["hang_end_s"])  # keep the connection open after the answer
        await resp.write_eof()
        return resp
