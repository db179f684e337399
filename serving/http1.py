"""A lean HTTP/1.1 server for the gateway, on asyncio protocols and httptools (llhttp).

Why not aiohttp's server: at 16 concurrent streams its per-request objects (request, router
match, response and payload writer) and its per-chunk write path were most of what the
gateway added on top of the upstream's own time (bench/RESULTS.md). This server does only
what the gateway's endpoints need, with headers built as bytes once per response:

- keep-alive, one request at a time per connection (a pipelined request waits its turn);
- request bodies by Content-Length or chunked, capped (413 past the cap), `Expect:
  100-continue` answered;
- responses whole (Content-Length) or streamed (chunked), with write flow control;
- a client that went away makes the next write raise ConnectionResetError, the handler
  itself is not cancelled (the gateway settles budgets and metrics after a cut stream);
- shutdown: stop listening, keep answering open connections while running handlers finish,
  then close everything.

No upgrades, no HTTP/2: the gateway has no use for them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any, cast

import httptools

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Headers(dict[str, str]):
    """Request headers by lower-case name (a repeated header's values joined with ", ")."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "_conn")

    def __init__(self, method: str, path: str, query: str, headers: Headers, body: bytes, conn: _Connection) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self._conn = conn

    @property
    def content_length(self) -> int:
        """The body's size as read (whether it came with Content-Length or chunked)."""
        return len(self.body)

    async def read(self) -> bytes:
        return self.body


def _head(status: int, headers: dict[str, str] | None, extra: bytes) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    if headers:
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(extra)
    return b"".join(lines)


class Response:
    """A whole response: sent with its Content-Length after the handler returns."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int = 200, body: bytes | None = None, text: str | None = None,
                 content_type: str = "text/plain", charset: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        if text is not None:
            body = text.encode()
            charset = charset or "utf-8"
        self.body = body or b""
        self.headers = dict(headers) if headers else {}
        self.headers.setdefault("content-type", f"{content_type}; charset={charset}" if charset else content_type)

    def encode(self, keep_alive: bool) -> bytes:
        extra = b"content-length: %d\r\n%s\r\n" % (len(self.body), b"" if keep_alive else b"connection: close\r\n")
        return _head(self.status, self.headers, extra) + self.body


class StreamResponse:
    """A streamed (chunked) response: `prepare`, any number of `write`, then `write_eof`."""

    __slots__ = ("status", "headers", "_conn", "_eof")

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self._conn: _Connection | None = None
        self._eof = False

    async def prepare(self, request: Request) -> None:
        conn = self._conn = request._conn
        conn.responding = True
        extra = b"transfer-encoding: chunked\r\n%s\r\n" % (b"" if conn.keep_alive else b"connection: close\r\n")
        await conn.send(_head(self.status, self.headers, extra))

    async def write(self, data: bytes) -> None:
        if data:
            await self._conn.send(b"%x\r\n%s\r\n" % (len(data), data))  # type: ignore[union-attr]

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof:
            return
        self._eof = True
        last = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data) if data else b"0\r\n\r\n"
        await self._conn.send(last)  # type: ignore[union-attr]


Handler = Callable[[Request], Awaitable["Response | StreamResponse"]]


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue complete requests, run them one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.keep_alive = True
        self.busy = False
        self.responding = False  # a streamed response's head has gone out for the current request
        self.queue: list[Request] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._idle: asyncio.TimerHandle | None = None
        self._last_seen = False  # a request that ends the connection was read

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP server's are Transports
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        self.server.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._last_seen:
            return  # after a "Connection: close" request, anything more is ignored
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"upgrades are not supported")
        except httptools.HttpParserError:
            if not self._last_seen:  # llhttp also rejects bytes after a "close" request: ignore those
                self._fail(400, b"malformed HTTP request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self.server.connections.discard(self)
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("client went away"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- parser callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        declared = 0
        wants_continue = False
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"content-length":
                declared = int(value) if value.isdigit() else 0
            elif lname == b"expect" and value.lower() == b"100-continue":
                wants_continue = True
        if declared > self.server.max_body:
            self._too_large = True  # answered 413 once the body is read, never "continue"
        elif wants_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.server.max_body:
            self._too_large = True
        if not self._too_large:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            self._fail(413, b"request body too large")
            return
        headers = Headers()
        for name, value in self._headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            # key is lower-case already: the plain dict lookups, not the case-folding ones
            headers[key] = f"{dict.__getitem__(headers, key)}, {text}" if dict.__contains__(headers, key) else text
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        request = Request(self.parser.get_method().decode(), path, query, headers, b"".join(self._body), self)
        if not self.parser.should_keep_alive():
            self.keep_alive = False
            self._last_seen = True
        self.queue.append(request)
        if not self.busy:
            self.busy = True
            self.server.spawn(self._run())

    # -- the request loop
    def _open(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def _run(self) -> None:
        try:
            while self.queue and self._open():
                request = self.queue.pop(0)
                self.responding = False
                try:
                    response: Response | StreamResponse | None = await self.server.handler(request)
                except Exception:  # a bug in a handler: answer 500, keep the server up
                    self.server.log_exception(request)
                    # Mid-stream there is no status left to send: cut the body, which a client
                    # sees as an incomplete answer, never as a complete one.
                    response = None if self.responding else Response(500, text="internal server error")
                if isinstance(response, Response):
                    if self._open():
                        self.transport.write(response.encode(self.keep_alive))  # type: ignore[union-attr]
                elif response is None or not response._eof:
                    self.keep_alive = False  # a stream left open cannot be reused
                if not self.keep_alive:
                    if self.transport is not None:
                        self.transport.close()  # later pipelined requests are not run
                    break
        finally:
            self.busy = False
            if not self.closed:
                self._arm_idle()

    def _arm_idle(self) -> None:
        """Close a kept-alive connection nobody has used for `keepalive_s` (idle clients must
        not hold sockets forever)."""
        self._idle = asyncio.get_running_loop().call_later(self.server.keepalive_s, self._close_idle)

    def _close_idle(self) -> None:
        self._idle = None
        if not self.busy and not self.queue and not self.closed and self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes) -> None:
        if not self._open():
            raise ConnectionResetError("client went away")
        self.transport.write(data)  # type: ignore[union-attr]
        if self._paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def _fail(self, status: int, message: bytes) -> None:
        if self._open():
            self.transport.write(Response(status, body=message).encode(False))  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]


class Server:
    """Routes (method, path) to handlers; listens; shuts down without cutting running requests."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler], max_body: int,
                 on_exception: Callable[[Request], None] | None = None, keepalive_s: float = 75.0) -> None:
        self.routes = routes
        self.keepalive_s = keepalive_s
        self.paths = {path for _, path in routes}
        self.max_body = max_body
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._on_exception = on_exception

    async def handler(self, request: Request) -> Response | StreamResponse:
        handler = self.routes.get((request.method, request.path))
        if handler is not None:
            return await handler(request)
        if request.path in self.paths:
            return Response(405, text="405: Method Not Allowed")
        return Response(404, text="404: Not Found")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def log_exception(self, request: Request) -> None:
        if self._on_exception is not None:
            self._on_exception(request)

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=backlog)

    async def stop_accepting(self) -> None:
        """Close the listening socket. Connections already open are still answered until
        `close`: a load balancer's kept-alive health checker must see the gateway's /readyz
        503 during the drain, not a refused connection."""
        if self._server is not None:
            self._server.close()

    async def close(self, grace_s: float) -> None:
        """After the drain: give running requests `grace_s`, then cancel them and close all."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_s)
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
