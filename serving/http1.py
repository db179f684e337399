"""A lean HTTP/1.1 server for the gateway, on asyncio protocols and httptools (llhttp).

Why not aiohttp's server: at 16 concurrent streams its per-request objects were most of what
the gateway added on top of the upstream's own time (bench/RESULTS.md). This server does only
what the gateway's endpoints need, with headers built as bytes once per response:

- keep-alive, one request at a time per connection; pipelined requests are answered in order,
  each one before a `Connection: close` request included, nothing after it;
- request bodies by Content-Length or chunked, capped: a body declared over the cap gets 413
  at once (never `100 Continue`), one that grows past it 413 when it does;
- limits nobody without a key can push past (`Limits`): a deadline for the headers and one for
  the body, caps on the URL, the header count and the header bytes, a cap on connections, and
  a `gate` that may refuse a request from its headers alone (the gateway checks the key there,
  before a byte of the body is read);
- responses whole (Content-Length) or streamed (chunked), with write flow control; a client
  that went away makes the next write raise ConnectionResetError (the handler is not
  cancelled: the gateway settles budgets and metrics after a cut stream);
- shutdown: stop listening, keep answering open connections while running handlers finish,
  then close everything.

No upgrades, no HTTP/2: the gateway has no use for them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httptools

from agentdeploy.serving.httpmsg import Handler, Headers, Request, Response, Router, StreamResponse

__all__ = ["Handler", "Headers", "Limits", "Request", "Response", "Server", "StreamResponse"]

#: Decides from the method, path and headers alone whether to refuse a request before its body.
Gate = Callable[[str, str, Headers], "Response | None"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may cost the server before a handler runs (defaults as nginx's and
    uvicorn's, in spirit: a few KiB of headers, seconds to send them)."""

    max_body: int = 32 * 1024 * 1024
    #: From a request's first byte to the end of its headers.
    header_timeout_s: float = 10.0
    #: From the end of the headers to the end of the body (32 MiB at ~1 MB/s fits).
    body_timeout_s: float = 60.0
    max_url: int = 8192
    max_headers: int = 100
    max_header_bytes: int = 64 * 1024
    max_connections: int = 4096
    #: Request bodies held in memory by all connections together (read, queued or being
    #: answered): past it a body is refused 503, so many large bodies cannot exhaust memory.
    max_buffered_body_bytes: int = 256 * 1024 * 1024
    #: A response write the client does not take within this long ends the connection.
    send_timeout_s: float = 60.0
    #: An idle kept-alive connection is closed after this long.
    keepalive_s: float = 75.0


class _Refuse(Exception):
    """Raised in a parser callback: answer `status` and close."""

    def __init__(self, status: int, message: bytes, response: Response | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.response = status, message, response


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue complete requests, run them one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.keep_alive = True  # of the request being answered (its response's Connection header)
        self.busy = False
        self.responding = False  # a streamed response's head has gone out for the current request
        self.queue: list[Request] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._size = 0
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_seen = False  # a request that ends the connection was read: read no more
        self._final: bytes = b""  # an error to send once the running request is answered
        self._in_head = False  # between a request's first byte and the end of its headers
        self._head_seen = 0
        self._held = 0  # body bytes this connection holds (counted in server.buffered)

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP server's are Transports
        if len(self.server.connections) >= self.limits.max_connections:
            self._last_seen = True
            self._linger(Response(503, text="too many connections").encode(False))
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        self.server.connections.add(self)
        self._arm(self.limits.keepalive_s, self._close_idle)

    def data_received(self, data: bytes) -> None:
        if self._last_seen:
            return  # after a "Connection: close" request, anything more is ignored
        if self._in_head:
            # httptools hands a header over only once its line is complete, buffering it until
            # then: count the head's bytes here, or one endless header line grows without bound.
            self._head_seen += len(data)
            if self._head_seen > self.limits.max_header_bytes + self.limits.max_url + 1024:
                self._fail(431, b"request headers too large")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"upgrades are not supported")
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refuse):
                self._fail(refusal.status, refusal.message, refusal.response)
            else:
                self._fail(400, b"malformed HTTP request")
        except httptools.HttpParserError:
            if not self._last_seen:  # llhttp also rejects bytes after a "close" request: ignore those
                self._fail(400, b"malformed HTTP request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self._release()
        self.server.connections.discard(self)
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("client went away"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- deadlines: one timer per connection, re-armed per phase (idle, headers, body)
    def _arm(self, delay: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(delay, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        self._fail(408, b"request not received in time")

    # -- parser callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._size = 0
        self._in_head, self._head_seen = True, 0
        self._arm(self.limits.header_timeout_s, self._too_slow)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_url:
            raise _Refuse(414, b"URL too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if len(self._headers) > self.limits.max_headers or self._header_bytes > self.limits.max_header_bytes:
            raise _Refuse(431, b"request headers too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        declared = 0
        wants_continue = False
        has_host = False
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"host":
                has_host = True
            elif lname == b"content-length":
                declared = int(value) if value.isdigit() else 0
            elif lname == b"expect" and value.lower() == b"100-continue":
                wants_continue = True
        if not has_host and self.parser.get_http_version() == "1.1":
            raise _Refuse(400, b"an HTTP/1.1 request needs a Host header")  # RFC 9112, 3.2
        gate = self.server.gate
        if gate is not None:
            url = self._url.decode("latin-1")
            refusal = gate(self.parser.get_method().decode(), url.partition("?")[0], self._header_map())
            if refusal is not None:
                raise _Refuse(refusal.status, refusal.body, refusal)
        if declared > self.limits.max_body:
            raise _Refuse(413, b"request body too large")  # at once: no 100 Continue, nothing read
        self._arm(self.limits.body_timeout_s, self._too_slow)
        if wants_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.limits.max_body:
            raise _Refuse(413, b"request body too large")
        if self.server.buffered + len(body) > self.limits.max_buffered_body_bytes:
            raise _Refuse(503, b"too many request bodies in memory; retry shortly")
        self._held += len(body)
        self.server.buffered += len(body)
        self._body.append(body)

    def _release(self, n: int | None = None) -> None:
        """Give back `n` body bytes this connection held (all of them when it is gone)."""
        n = self._held if n is None else min(n, self._held)
        self.server.buffered -= n
        self._held -= n

    def on_message_complete(self) -> None:
        self._disarm()
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        keep_alive = bool(self.parser.should_keep_alive())
        request = Request(self.parser.get_method().decode(), path, query, self._header_map(), b"".join(self._body), self, keep_alive)
        if not keep_alive:
            self._last_seen = True
        self.queue.append(request)
        if not self.busy:
            self.busy = True
            self.server.spawn(self._run())

    def _header_map(self) -> Headers:
        headers = Headers()
        for name, value in self._headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            # key is lower-case already: the plain dict lookups, not the case-folding ones
            headers[key] = f"{dict.__getitem__(headers, key)}, {text}" if dict.__contains__(headers, key) else text
        return headers

    # -- the request loop
    def _open(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def _run(self) -> None:
        try:
            while self.queue and self._open():
                request = self.queue.pop(0)
                self.responding = False
                self.keep_alive = request.keep_alive
                try:
                    response: Response | StreamResponse | None = await self.server.handler(request)
                except Exception:  # a bug in a handler: answer 500, keep the server up
                    self.server.log_exception(request)
                    # Mid-stream there is no status left to send: cut the body, which a client
                    # sees as an incomplete answer, never as a complete one.
                    response = None if self.responding else Response(500, text="internal server error")
                self._release(len(request.body))  # answered: its body no longer counts
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
                if self._last_seen and not self.queue and self.transport is not None:
                    if self._final and self._open():
                        self._linger(self._final)
                    else:
                        self.transport.close()  # the connection's last request was answered
                elif self._timer is None:
                    self._arm(self.limits.keepalive_s, self._close_idle)

    def _close_idle(self) -> None:
        self._timer = None
        if not self.busy and not self.queue and not self.closed and self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes) -> None:
        if not self._open():
            raise ConnectionResetError("client went away")
        self.transport.write(data)  # type: ignore[union-attr]
        if self._paused:
            self._drain = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.limits.send_timeout_s):
                    await self._drain
            except TimeoutError:
                # A client that stops reading would hold the answer (and its upstream) forever.
                self.transport.abort()  # type: ignore[union-attr]
                raise ConnectionResetError("client stopped reading") from None

    def _fail(self, status: int, message: bytes, response: Response | None = None) -> None:
        """Refuse what is being read, then close. With a request still being answered, the
        refusal waits its turn (after the answers of every request before it)."""
        self._disarm()
        self._last_seen = True
        if not self._open():
            return
        data = (response or Response(status, body=message)).encode(False)
        if self.busy:
            self._final = data
            self.transport.pause_reading()  # type: ignore[union-attr]
            return
        self._linger(data)

    def _linger(self, data: bytes) -> None:
        """Send a last answer and close without losing it: closing a socket that has unread
        input makes the kernel send a reset, which can destroy the answer in flight. So: send,
        half-close (FIN after the answer), drop whatever still arrives, close after LINGER_S."""
        transport = self.transport
        if transport is None:
            return
        transport.write(data)
        if transport.can_write_eof():
            transport.write_eof()
            self._timer = asyncio.get_running_loop().call_later(LINGER_S, transport.close)
        else:
            transport.close()


#: How long a refused connection's leftover input is read and dropped before it is closed.
LINGER_S = 2.0


class Server:
    """Routes (method, path) to handlers; listens; shuts down without cutting running requests."""

    def __init__(self, routes: Router | Mapping[tuple[str, str], Handler], limits: Limits | None = None,
                 on_exception: Callable[[Request], None] | None = None, gate: Gate | None = None) -> None:
        self.routes = routes if isinstance(routes, Router) else Router(routes)
        self.limits = limits or Limits()
        self.gate = gate
        self.connections: set[_Connection] = set()
        #: Request body bytes all connections hold now (Limits.max_buffered_body_bytes).
        self.buffered = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._on_exception = on_exception

    async def handler(self, request: Request) -> Response | StreamResponse:
        handler = self.routes.find(request.method, request.path)
        if handler is not None:
            return await handler(request)
        if self.routes.knows(request.path):
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
