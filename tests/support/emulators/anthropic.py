"""A local emulator of the Anthropic Messages API, for tests and benchmarks (no internet here).

Faithful where the gateway depends on it: header checks (`x-api-key`, `anthropic-version`),
error shapes and status codes (400/401/404/429/500/529, `retry-after`), the SSE event order
(message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta with usage, message_stop), and usage with prompt caching computed from the
request's `cache_control` breakpoints (model minimum, 5 m / 1 h TTL, reads vs writes).
Token counts follow `agentdeploy.serving.tokens` (about 4 bytes a token), so tests can
predict them.

Faults are queued through a control API and consumed by the next matching requests:

  POST   /_emulator/faults    [{"status": 429, "retry_after": 1, "times": 2}, {"ttft_s": 3}, ...]
  DELETE /_emulator/faults
  POST   /_emulator/config    {"output_tokens": 20, "token_delay_s": 0.001, "min_cacheable": {...}}
  GET    /_emulator/requests  every request received (headers it cares about, body, received_s)
  DELETE /_emulator/requests  also clears the prompt cache

Fault fields (all optional): status, retry_after, message, error_type (error response);
delay_s (before any byte), ttft_s (after message_start, before the first delta),
stall_after / stall_s (pause mid-stream), cut_after (drop the connection after N deltas),
malformed_after (send a broken event after N deltas; 0: in place of the first), reset (drop the connection before any
byte of an answer), token_delay_s, output_tokens,
refusal (stop_reason "refusal"), tool_call {"name","input"}, sse_error / sse_error_after (an
in-band `error` event such as "overloaded_error" after a 200, after N deltas, default 0, as the
API sends when it is overloaded mid-request), times (default 1, -1 = always), model (only
requests for this model).

Run from the repository root: python -m tests.support.emulators.anthropic --port 8765 [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from agentdeploy.serving.tokens import content_tokens, text_tokens

#: Minimum cacheable prompt length per model family (catalog facts, 2026).
DEFAULT_MIN_CACHEABLE = {
    "claude-haiku-4-5": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-opus-4-7": 4096,
    "claude-sonnet-4-6": 2048,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-1": 1024,
}
TTL_S = {"5m": 300.0, "1h": 3600.0}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
WORDS = ("the", "quick", "answer", "is", "here", "and", "it", "keeps", "going", "until", "done", "now")


@dataclass
class EmulatorState:
    api_keys: set[str]
    output_tokens: int = 12
    token_delay_s: float = 0.0
    context_tokens: int = 200_000
    min_cacheable: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIN_CACHEABLE))
    faults: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    cache: dict[str, float] = field(default_factory=dict)
    record: bool = True

    def min_for(self, model: str) -> int:
        for prefix, n in self.min_cacheable.items():
            if model.startswith(prefix):
                return n
        return 1024

    def take_fault(self, model: str) -> dict:
        for i, f in enumerate(self.faults):
            if f.get("model") and f["model"] != model:
                continue
            times = f.get("times", 1)
            if times == 1:
                self.faults.pop(i)
            elif times > 1:
                f["times"] = times - 1
            return f
        return {}


def _error(status: int, message: str, kind: str | None = None, headers: dict | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind or ERROR_TYPES.get(status, "api_error"), "message": message}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _units(body: dict) -> list[tuple[Any, dict | None]]:
    """The request's prefix in cache order (tools, system, messages) as (unit, cache_control)."""
    units: list[tuple[Any, dict | None]] = []
    for tool in body.get("tools") or ():
        units.append((("tool", {k: v for k, v in tool.items() if k != "cache_control"}), tool.get("cache_control")))
    system = body.get("system")
    if isinstance(system, str):
        units.append((("system", system), None))
    elif isinstance(system, list):
        for block in system:
            units.append((("system", {k: v for k, v in block.items() if k != "cache_control"}), block.get("cache_control")))
    for i, msg in enumerate(body.get("messages") or ()):
        content = msg.get("content")
        if isinstance(content, str):
            units.append(((msg.get("role"), i, content), None))
        else:
            for block in content or ():
                units.append(((msg.get("role"), i, {k: v for k, v in block.items() if k != "cache_control"}), block.get("cache_control")))
    if body.get("cache_control") and units:  # automatic caching: breakpoint on the last block
        last, cc = units[-1]
        units[-1] = (last, cc or body["cache_control"])
    return units


def _unit_tokens(unit: Any) -> int:
    payload = unit[-1]
    return content_tokens(payload) if not isinstance(payload, str) else text_tokens(payload)


def compute_usage(state: EmulatorState, body: dict, model: str) -> dict:
    """Input-side usage with prompt caching, as the real API reports it."""
    units = _units(body)
    tokens = [_unit_tokens(u) for u, _ in units]
    total = sum(tokens)
    minimum = state.min_for(model)
    now = time.monotonic()
    breakpoints = []  # (cumulative tokens, key, ttl)
    digest = hashlib.sha256(model.encode())
    cum = 0
    for (unit, cc), n in zip(units, tokens, strict=True):
        digest.update(orjson.dumps(unit, option=orjson.OPT_SORT_KEYS))
        cum += n
        if cc is not None and cum >= minimum:
            breakpoints.append((cum, digest.copy().hexdigest(), cc.get("ttl", "5m")))
    read = 0
    for cum_tokens, key, _ttl in breakpoints:
        expiry = state.cache.get(key)
        if expiry is not None and expiry > now:
            read = max(read, cum_tokens)
    write = {"5m": 0, "1h": 0}
    prev = read
    for cum_tokens, key, ttl in breakpoints:
        state.cache[key] = now + TTL_S.get(ttl, 300.0)  # a hit refreshes the TTL
        if cum_tokens > prev:
            write[ttl if ttl in write else "5m"] += cum_tokens - prev
            prev = cum_tokens
    written = write["5m"] + write["1h"]
    return {
        "input_tokens": total - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write["5m"], "ephemeral_1h_input_tokens": write["1h"]},
        "total": total,
    }


def _generate(body: dict, n: int) -> tuple[list[str], str, str | None]:
    """Deterministic output pieces (one token each), stop reason, stop sequence."""
    last = ""
    for msg in reversed(body.get("messages") or ()):
        if msg.get("role") == "user":
            c = msg.get("content")
            last = c if isinstance(c, str) else " ".join(b.get("text", "") for b in c or () if b.get("type") == "text")
            break
    seed = [w for w in last.split() if w][:4] or ["hello"]
    vocab = list(seed) + list(WORDS)
    pieces = [(vocab[i % len(vocab)] + " ") for i in range(n)]
    stops = body.get("stop_sequences") or []
    text = ""
    for i, p in enumerate(pieces):
        text += p
        for s in stops:
            if s and s in text:
                return pieces[:i], "stop_sequence", s
    return pieces, "end_turn", None


class ClaudeEmulator:
    """The aiohttp application and its state; use `run_in_thread` (tests) or `main` (CLI)."""

    def __init__(self, api_keys: set[str] | None = None) -> None:
        self.state = EmulatorState(api_keys=set(api_keys or {"test-key"}))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/_emulator/faults", self.add_faults)
        app.router.add_delete("/_emulator/faults", self.clear_faults)
        app.router.add_post("/_emulator/config", self.configure)
        app.router.add_get("/_emulator/requests", self.list_requests)
        app.router.add_delete("/_emulator/requests", self.clear_requests)
        self.app = app
        from tests.support.emulators.anthropic_batches import BatchesRoom

        self.batches = BatchesRoom(self)  # Message Batches (/v1/messages/batches, /_emulator/batches/*)

    # ------------------------------------------------------------------ control
    async def add_faults(self, request: web.Request) -> web.Response:
        faults = orjson.loads(await request.read())
        self.state.faults.extend(faults if isinstance(faults, list) else [faults])
        return web.json_response({"queued": len(self.state.faults)})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.state.faults.clear()
        return web.json_response({"queued": 0})

    async def configure(self, request: web.Request) -> web.Response:
        cfg = orjson.loads(await request.read())
        s = self.state
        for key in ("output_tokens", "token_delay_s", "context_tokens", "record"):
            if key in cfg:
                setattr(s, key, cfg[key])
        if "min_cacheable" in cfg:
            s.min_cacheable = {**cfg["min_cacheable"], **s.min_cacheable} if cfg.get("merge") else dict(cfg["min_cacheable"])
        if "api_keys" in cfg:
            s.api_keys = set(cfg["api_keys"])
        return web.json_response({"ok": True})

    async def list_requests(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.state.requests), content_type="application/json")

    async def clear_requests(self, request: web.Request) -> web.Response:
        self.state.requests.clear()
        self.state.cache.clear()
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ API
    def _check_headers(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key")
        if not key or key not in self.state.api_keys:
            return _error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "anthropic-version: header is required")
        return None

    async def models(self, request: web.Request) -> web.Response:
        bad = self._check_headers(request)
        if bad:
            return bad
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-10-01T00:00:00Z"} for m in DEFAULT_MIN_CACHEABLE]
        return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})

    def _validate(self, body: Any, need_max_tokens: bool = True) -> web.Response | None:
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "model: Field required")
        if not model.startswith("claude-"):
            return _error(404, f"model: {model}")
        if need_max_tokens and (not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1):
            return _error(400, "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages: at least one message is required")
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                return _error(400, f"messages.{i}: Input should be a valid dictionary")
            if m.get("role") not in ("user", "assistant"):
                return _error(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
            content = m.get("content")
            if not isinstance(content, (str, list)):
                return _error(400, f"messages.{i}.content: Input should be a valid string or list")
            if isinstance(content, list):
                for j, block in enumerate(content):
                    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                        return _error(400, f"messages.{i}.content.{j}: Input should be a valid dictionary with a type")
                    if block["type"] == "text" and not isinstance(block.get("text"), str):
                        return _error(400, f"messages.{i}.content.{j}.text: Input should be a valid string")
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            return _error(400, "system: Input should be a valid string or list")
        tools = body.get("tools")
        if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)):
            return _error(400, "tools: Input should be a list of tool definitions with a name")
        marks = sum(1 for _, cc in _units(body) if cc is not None)
        if marks > 4:
            return _error(400, f"A maximum of 4 blocks with cache_control may be provided. Found {marks}.")
        return None

    async def count_tokens(self, request: web.Request) -> web.Response:
        bad = self._check_headers(request)
        if bad:
            return bad
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "request body is not valid JSON")
        bad = self._validate(body, need_max_tokens=False)
        if bad:
            return bad
        return web.json_response({"input_tokens": sum(_unit_tokens(u) for u, _ in _units(body))})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        s = self.state
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        record: dict[str, Any] = {
            "api_key": request.headers.get("x-api-key"),
            "anthropic_version": request.headers.get("anthropic-version"),
            "body": body,
            "received_s": time.monotonic(),  # when it arrived: retry spacing is checkable
            "served": None,  # the usage this request was billed, once it ran (see _bill)
        }
        if s.record:
            s.requests.append(record)
        bad = self._check_headers(request)
        if bad:
            return bad
        if body is None:
            return _error(400, "request body is not valid JSON")
        bad = self._validate(body)
        if bad:
            return bad
        model = body["model"]
        fault = s.take_fault(model)
        if fault.get("delay_s"):
            await asyncio.sleep(fault["delay_s"])
        if fault.get("reset"):
            # The connection drops before any byte of an answer (a proxy or worker restarting).
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()  # never sent: the transport is gone
        if fault.get("status"):
            status = int(fault["status"])
            headers = {"retry-after": str(fault["retry_after"])} if "retry_after" in fault else None
            default = "Overloaded" if status == 529 else "Rate limited" if status == 429 else "Internal server error"
            return _error(status, fault.get("message", default), fault.get("error_type"), headers)
        usage = compute_usage(s, body, model)
        if usage["total"] > s.context_tokens:
            return _error(400, f"prompt is too long: {usage['total']} tokens > {s.context_tokens} maximum")
        target = int(fault.get("output_tokens", s.output_tokens))
        n = min(body["max_tokens"], target)
        pieces, stop_reason, stop_seq = _generate(body, n)
        if target > body["max_tokens"] and stop_reason == "end_turn":
            stop_reason = "max_tokens"
        if fault.get("refusal"):
            pieces, stop_reason = pieces[: max(1, len(pieces) // 3)], "refusal"
        tool = fault.get("tool_call") or _forced_tool(body)
        if tool:
            stop_reason = "tool_use"
        msg_id = "msg_emu" + hashlib.sha1(f"{time.time_ns()}".encode()).hexdigest()[:20]
        in_usage = {k: v for k, v in usage.items() if k != "total"}
        headers = {"request-id": "req_emu" + msg_id[7:]}
        if not body.get("stream"):
            if fault.get("ttft_s"):
                await asyncio.sleep(fault["ttft_s"])
            content: list[dict] = [{"type": "text", "text": "".join(pieces)}] if pieces else []
            out_tokens = len(pieces)
            if tool:
                content.append({"type": "tool_use", "id": "toolu_emu" + msg_id[7:19], "name": tool["name"], "input": tool.get("input", {})})
                out_tokens += text_tokens(orjson.dumps(tool.get("input", {})).decode()) + 1
            message = {
                "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop_reason, "stop_sequence": stop_seq,
                "usage": {**in_usage, "output_tokens": out_tokens, "service_tier": "standard"},
            }
            record["served"] = _bill(model, in_usage, out_tokens)
            return web.Response(body=orjson.dumps(message), content_type="application/json", headers=headers)
        served = {"output_tokens": 0}
        try:
            return await self._stream(request, body, model, pieces, stop_reason, stop_seq, tool, in_usage, fault, msg_id, headers, served)
        finally:
            # Billed like the API: the input, and every output token generated, whether or not
            # the client stayed to read it (an in-band error before any token bills nothing).
            record["served"] = _bill(model, in_usage, served["output_tokens"]) if served.get("billed", True) else None

    async def _stream(self, request, body, model, pieces, stop_reason, stop_seq, tool, in_usage, fault, msg_id, headers, served):
        resp = web.StreamResponse(headers={**headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"})
        await resp.prepare(request)

        def ev(name: str, obj: dict) -> bytes:
            return f"event: {name}\ndata: ".encode() + orjson.dumps(obj) + b"\n\n"

        start = {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**in_usage, "output_tokens": 1, "service_tier": "standard"},
        }
        await resp.write(ev("message_start", {"type": "message_start", "message": start}))
        if fault.get("ttft_s"):
            await asyncio.sleep(fault["ttft_s"])
        if fault.get("malformed_after") == 0:
            # A broken event where the first delta should be: garbled before any token.
            await resp.write(b"event: content_block_start\ndata: {\"type\": \"content_block_st\n\n")
            await resp.write_eof()
            return resp
        delay = float(fault.get("token_delay_s", self.state.token_delay_s))
        sent = 0
        index = 0
        out_tokens = 0

        async def in_band_error() -> bool:
            """Send the fault's in-band error event when its turn has come; True = stream over."""
            if not fault.get("sse_error") or sent != int(fault.get("sse_error_after", 0)):
                return False
            kind = fault["sse_error"]
            await resp.write(ev("error", {"type": "error", "error": {"type": kind, "message": "Overloaded" if kind == "overloaded_error" else "Internal server error"}}))
            await resp.write_eof()
            return True

        if await in_band_error():
            served["billed"] = False
            return resp

        async def checkpoint() -> bool:
            """Apply mid-stream faults after each delta; False = the connection was cut."""
            nonlocal sent
            sent += 1
            if await in_band_error():
                return False
            if fault.get("stall_after") is not None and sent == int(fault["stall_after"]):
                await asyncio.sleep(float(fault.get("stall_s", 30)))
            if fault.get("malformed_after") is not None and sent == int(fault["malformed_after"]):
                await resp.write(b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_de\n\n")
            if fault.get("cut_after") is not None and sent == int(fault["cut_after"]):
                request.transport.close()
                return False
            if delay:
                await asyncio.sleep(delay)
            return True

        if pieces:
            await resp.write(ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
            await resp.write(b'event: ping\ndata: {"type": "ping"}\n\n')
            for piece in pieces:
                out_tokens += 1
                served["output_tokens"] = out_tokens  # generated: billed even if the write fails
                await resp.write(ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
                if not await checkpoint():
                    return resp
            await resp.write(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        if tool:
            tool_id = "toolu_emu" + msg_id[7:19]
            await resp.write(ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": tool_id, "name": tool["name"], "input": {}}}))
            if not pieces:
                await resp.write(b'event: ping\ndata: {"type": "ping"}\n\n')
            args = orjson.dumps(tool.get("input", {})).decode()
            served["output_tokens"] = out_tokens + text_tokens(args) + 1  # generated as a whole
            for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                await resp.write(ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}}))
                if not await checkpoint():
                    return resp
            out_tokens += text_tokens(args) + 1
            served["output_tokens"] = out_tokens
            await resp.write(ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        usage = {k: in_usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
        usage["output_tokens"] = out_tokens
        await resp.write(ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_seq}, "usage": usage}))
        await resp.write(ev("message_stop", {"type": "message_stop"}))
        await resp.write_eof()
        return resp


def _bill(model: str, in_usage: dict, output_tokens: int) -> dict:
    """One request's billed usage, as the emulator's own record (tests compare spend with it)."""
    return {"model": model, "input_tokens": in_usage["input_tokens"], "output_tokens": output_tokens,
            "cache_write_5m": in_usage["cache_creation"]["ephemeral_5m_input_tokens"],
            "cache_write_1h": in_usage["cache_creation"]["ephemeral_1h_input_tokens"],
            "cache_read": in_usage["cache_read_input_tokens"]}


def _forced_tool(body: dict) -> dict | None:
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    if not tools:
        return None
    if choice.get("type") == "any":
        return {"name": tools[0]["name"], "input": {}}
    if choice.get("type") == "tool":
        return {"name": choice.get("name"), "input": {}}
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Anthropic Messages API emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", action="append", default=None, help="accepted x-api-key (repeatable; default test-key)")
    parser.add_argument("--output-tokens", type=int, default=12)
    parser.add_argument("--token-delay-s", type=float, default=0.0)
    parser.add_argument("--no-record", action="store_true", help="do not keep request bodies (benchmarks)")
    args = parser.parse_args(argv)
    emu = ClaudeEmulator(set(args.api_key) if args.api_key else None)
    emu.state.output_tokens = args.output_tokens
    emu.state.token_delay_s = args.token_delay_s
    emu.state.record = not args.no_record
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(emu.app, host=args.host, port=args.port, print=lambda *_: print(f"claude emulator on http://{args.host}:{args.port}", flush=True), access_log=None)


if __name__ == "__main__":
    main()
