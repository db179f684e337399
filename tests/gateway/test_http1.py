"""The gateway's HTTP/1.1 server on its own, over real sockets on loopback.

Raw bytes go in, so what is checked is the wire: framing (Content-Length, chunked both ways),
keep-alive and pipelining, the body cap, `Expect: 100-continue`, malformed requests, a client
that leaves mid-stream, and a shutdown that closes idle connections but lets a running
request finish.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agentdeploy.serving.http1 import Limits, Request, Response, Server, StreamResponse


async def _echo(request: Request) -> Response:
    body = b"%s %s %s len=%d auth=%s" % (request.method.encode(), request.path.encode(), request.query.encode(),
                                        request.content_length, (request.headers.get("Authorization") or "-").encode())
    return Response(body=body + b"|" + await request.read(), headers={"x-seen": request.headers.get("x-multi", "")})


class _Streams:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.finished = asyncio.Event()
        self.release = asyncio.Event()

    async def stream(self, request: Request) -> StreamResponse:
        resp = StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i in range(3):
                await resp.write(b"data: %d\n\n" % i)
            if request.query == "hold":
                await self.release.wait()
                for _ in range(200):  # the client has gone: a write must raise, not hang
                    await resp.write(b"x" * 65536)
                    await asyncio.sleep(0.005)
            await resp.write_eof(b"data: [DONE]\n\n")
        except ConnectionError as exc:
            self.errors.append(exc)
        finally:
            self.finished.set()
        return resp


async def _broken(request: Request) -> StreamResponse:
    if request.query == "mid-stream":
        resp = StreamResponse()
        await resp.prepare(request)
        await resp.write(b"data: partial\n\n")
    raise RuntimeError("a bug")


async def _serve(max_body: int = 1024, keepalive_s: float = 75.0, gate=None, **limits):  # type: ignore[no-untyped-def]
    streams = _Streams()
    routes = {("POST", "/echo"): _echo, ("GET", "/echo"): _echo, ("GET", "/stream"): streams.stream, ("GET", "/broken"): _broken}
    server = Server(routes, Limits(max_body=max_body, keepalive_s=keepalive_s, **limits), gate=gate)
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return server, port, streams


async def _exchange(port: int, data: bytes, until: bytes = b"", timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            out += chunk
            if until and out.endswith(until):
                break
    finally:
        writer.close()
    return out


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_keep_alive_pipelining_and_chunked_request_bodies() -> None:
    async def scenario() -> bytes:
        server, port, _ = await _serve()
        try:
            two = (b"POST /echo?a=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nAuthorization: Bearer k1\r\n\r\nhello"
                   b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nx-multi: a\r\nX-Multi: b\r\n\r\n"
                   b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            return await _exchange(port, two, until=b"|abcde")
        finally:
            await server.stop_accepting()
            await server.close(1)

    out = run(scenario())
    first, second = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"content-length: " in first
    assert first.endswith(b"POST /echo a=1 len=5 auth=Bearer k1|hello")
    assert b"connection: close" not in first  # kept alive: the second answer came on the same socket
    assert b"x-seen: a, b\r\n" in second
    assert second.endswith(b"POST /echo  len=5 auth=-|abcde")


def test_errors_on_the_wire() -> None:
    async def scenario() -> dict[str, bytes]:
        server, port, _ = await _serve(max_body=16)
        try:
            return {
                "404": await _exchange(port, b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n", until=b"Not Found"),
                "405": await _exchange(port, b"DELETE /echo HTTP/1.1\r\nhost: x\r\n\r\n", until=b"Allowed"),
                "413 declared": await _exchange(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 17\r\n\r\n" + b"a" * 17),
                "413 chunked": await _exchange(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                                                     b"10\r\n" + b"a" * 16 + b"\r\n1\r\nb\r\n0\r\n\r\n"),
                "413 expect": await _exchange(port, b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 17\r\n\r\n" + b"a" * 17),
                "malformed": await _exchange(port, b"NOT HTTP AT ALL\r\n\r\n"),
                "continue": await _exchange(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\nok",
                                            until=b"|ok"),
            }
        finally:
            await server.stop_accepting()
            await server.close(1)

    out = run(scenario())
    assert out["404"].startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert out["405"].startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    for case in ("413 declared", "413 chunked", "413 expect"):  # never "100 Continue" for a body over the cap
        assert out[case].startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), out[case]
        assert b"connection: close" in out[case]
    assert out["malformed"].startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert out["continue"].startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")


def test_streams_are_chunked_and_a_client_that_leaves_makes_writes_raise() -> None:
    async def scenario() -> tuple[httpx.Response, list[str], _Streams]:
        server, port, streams = await _serve()
        try:
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/stream")
                lines = [ln for ln in r.text.split("\n") if ln]
            # A client that reads three events and leaves while the server keeps writing.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /stream?hold HTTP/1.1\r\nhost: x\r\n\r\n")
            got = b""
            while got.count(b"data: ") < 3:
                got += await asyncio.wait_for(reader.read(65536), 5)
            writer.transport.abort()  # type: ignore[attr-defined]
            streams.release.set()
            await asyncio.wait_for(streams.finished.wait(), 10)
            return r, lines, streams
        finally:
            await server.stop_accepting()
            await server.close(1)

    r, lines, streams = run(scenario())
    assert r.status_code == 200
    assert r.headers["transfer-encoding"] == "chunked"
    assert lines == ["data: 0", "data: 1", "data: 2", "data: [DONE]"]
    assert len(streams.errors) == 1
    assert isinstance(streams.errors[0], ConnectionResetError)


def test_shutdown_stops_listening_answers_open_connections_and_lets_a_running_request_finish() -> None:
    async def scenario() -> tuple[bytes, bytes, bytes, bytes]:
        server, port, streams = await _serve()
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        idle_w.write(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
        first = await asyncio.wait_for(idle_r.read(65536), 5)  # answered; the connection stays open
        busy = asyncio.ensure_future(_exchange(port, b"GET /stream?hold HTTP/1.1\r\nhost: x\r\n\r\n", until=b"0\r\n\r\n", timeout=10))
        while not server.tasks:
            await asyncio.sleep(0.01)
        await server.stop_accepting()
        with pytest.raises(OSError):  # no new connections...
            await asyncio.open_connection("127.0.0.1", port)
        idle_w.write(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")  # ...but an open one is still answered
        second = await asyncio.wait_for(idle_r.read(65536), 5)
        streams.release.set()  # the running stream goes on after stop_accepting, to its end
        body = await busy
        await server.close(1)
        after_close = await asyncio.wait_for(idle_r.read(65536), 5)
        return first, second, body, after_close

    first, second, body, after_close = run(scenario())
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert second.startswith(b"HTTP/1.1 200 OK")
    assert body.startswith(b"HTTP/1.1 200 OK")
    assert body.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert after_close == b""  # close() ends the kept-alive connection


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_window() -> None:
    async def scenario() -> tuple[bytes, bytes, float]:
        server, port, _ = await _serve(keepalive_s=0.3)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(65536), 5)
            t0 = asyncio.get_running_loop().time()
            closed = await asyncio.wait_for(reader.read(65536), 5)
            return answer, closed, asyncio.get_running_loop().time() - t0
        finally:
            await server.stop_accepting()
            await server.close(1)

    answer, closed, waited = run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" not in answer
    assert closed == b""
    assert 0.2 < waited < 3


def test_a_failing_handler_answers_500_before_a_stream_and_cuts_the_body_after() -> None:
    async def scenario() -> dict[str, bytes]:
        server, port, _ = await _serve()
        try:
            return {
                # A 500, and the connection stays usable for the next request.
                "before": await _exchange(port, b"GET /broken HTTP/1.1\r\nhost: x\r\n\r\nGET /echo HTTP/1.1\r\nhost: x\r\n\r\n",
                                          until=b"auth=-|"),
                # Mid-stream: the connection closes without the chunked terminator.
                "mid-stream": await _exchange(port, b"GET /broken?mid-stream HTTP/1.1\r\nhost: x\r\n\r\n"),
                # "Connection: close": the pipelined request after it is never run.
                "close": await _exchange(port, b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                                               b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"),
            }
        finally:
            await server.stop_accepting()
            await server.close(1)

    out = run(scenario())
    assert out["before"].startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert out["before"].count(b"HTTP/1.1 200 OK") == 1
    assert out["mid-stream"].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"data: partial" in out["mid-stream"]
    assert not out["mid-stream"].endswith(b"0\r\n\r\n")
    assert out["close"].count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in out["close"]
    assert b"GET /echo" in out["close"]
