"""A lean HTTP/1.1 client for the request path to upstreams (keep-alive pool, streaming body).

Why not aiohttp's client here: measured on this project's bench machine, one aiohttp client
round trip costs ~0.5 ms of CPU before the first byte of a streamed answer, more than the rest
of the gateway's work together. The request path needs little: POST a JSON body, read the
status and headers, then stream a chunked or sized body. This module does exactly that on
asyncio protocols with pre-built header bytes; the /metrics poller keeps aiohttp.

Only what upstream APIs send is supported: HTTP/1.1, `Transfer-Encoding: chunked`,
`Content-Length`, or read-to-close; no compression (we never ask for it), no redirects.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

#: Pause reading from an upstream whose answer the client is slow to take.
HIGH_WATER = 1 << 20


class UpstreamConnectError(OSError):
    """Could not open a connection (refused, unreachable, connect timeout)."""


class UpstreamDisconnected(ConnectionError):
    """The connection dropped before the response was complete."""


class Endpoint:
    """Where one target's requests go, with the fixed part of the request pre-encoded."""

    __slots__ = ("host", "port", "ssl", "head", "key")

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.ssl = parts.scheme == "https"
        self.port = parts.port or (443 if self.ssl else 80)
        default = (self.ssl and self.port == 443) or (not self.ssl and self.port == 80)
        host_header = self.host if default else f"{self.host}:{self.port}"
        path = parts.path or "/"
        lines = [f"POST {path} HTTP/1.1", f"host: {host_header}", "accept: text/event-stream, application/json", "accept-encoding: identity"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        self.head = ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")
        self.key = (self.host, self.port, self.ssl)

    def request(self, body: bytes) -> bytes:
        return self.head + str(len(body)).encode() + b"\r\n\r\n" + body


class Body:
    """The response body as a stream: `readany()` like aiohttp's StreamReader."""

    __slots__ = ("_chunks", "_size", "_eof", "_exc", "_waiter", "_proto")

    def __init__(self, proto: _Conn) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._proto = proto

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER:
            self._proto.pause()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_exception(self, exc: BaseException) -> None:
        self._exc = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def readany(self) -> bytes:
        while True:
            if self._exc is not None:
                raise self._exc
            if self._chunks:
                data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._size = 0
                self._proto.resume()
                return data
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    async def read(self, limit: int = 1 << 16) -> bytes:
        out = b""
        while len(out) < limit:
            data = await self.readany()
            if not data:
                break
            out += data
        return out[:limit]


#: (host, port, tls): which idle connections a request may reuse.
PoolKey = tuple[str, int, bool]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time. The response's framing (status line,
    headers, chunked or sized body) is parsed by llhttp (httptools.HttpResponseParser), the
    parser Node.js uses, not by hand."""

    #: Set by connection_made, which create_connection calls before it hands the protocol out.
    transport: asyncio.Transport

    def __init__(self) -> None:
        self.closed = False
        self.paused = False
        self.resp: UpstreamResponse | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.complete = False
        self.got_bytes = False
        self.key: PoolKey = ("", 0, False)
        self._headers: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def pause(self) -> None:
        if not self.paused and self.transport and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def start(self, resp: UpstreamResponse, request: bytes) -> None:
        self.resp = resp
        self.parser = httptools.HttpResponseParser(self)
        self.complete = False
        self.got_bytes = False
        self._headers = {}
        self.transport.write(request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self.resp
        if resp is None or self.complete:
            return
        if resp.headers_done.done() and "content-length" not in resp.headers and "chunked" not in resp.headers.get("transfer-encoding", ""):
            resp.body.feed_eof()  # a body framed by the connection's end: this is its end
            resp._finish(reusable=False)
            return
        err = UpstreamDisconnected("upstream closed the connection" + (f": {exc}" if exc else ""))
        if not resp.headers_done.done():
            resp.headers_done.set_exception(err)
        resp.body.set_exception(err)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.resp is None or self.complete or self.parser is None:
            return  # bytes after a complete response: ignored (the connection will not be reused)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            err = UpstreamDisconnected(f"malformed upstream response: {exc}")
            if not self.resp.headers_done.done():
                self.resp.headers_done.set_exception(err)
            self.resp.body.set_exception(err)
            self.complete = True
            self.transport.close()

    # -- llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        resp, parser = self.resp, self.parser
        if resp is None or parser is None:
            return
        resp.status = parser.get_status_code()
        resp.headers = self._headers
        resp.keep_alive = bool(parser.should_keep_alive())
        if not resp.headers_done.done():
            resp.headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.resp is not None:
            self.resp.body.feed(body)

    def on_message_complete(self) -> None:
        resp = self.resp
        self.complete = True
        if resp is not None:
            resp.body.feed_eof()
            resp._finish(reusable=resp.keep_alive)


class UpstreamResponse:
    """One upstream answer: status and headers once `headers_done`, then the body as a stream."""

    __slots__ = ("status", "headers", "keep_alive", "body", "headers_done", "_conn", "_pool", "_complete", "_released", "_reusable")

    def __init__(self, conn: _Conn, pool: Pool) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.body = Body(conn)
        self.headers_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conn = conn
        self._pool = pool
        self._complete = False
        self._released = False
        self._reusable = False

    @property
    def content(self) -> Body:
        return self.body

    def _finish(self, reusable: bool) -> None:
        self._complete = True
        self._reusable = reusable

    def release(self) -> None:
        """Done with the response: pool the connection if the body was read to its end."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn.resp = None
        if self._complete and self._reusable and not conn.closed:
            self._pool.put(conn)
        else:
            conn.closed = True
            if conn.transport:
                conn.transport.close()

    def close(self) -> None:
        """Abandon the response (and its connection)."""
        self._complete = False
        self.release()


class Pool:
    """Idle keep-alive connections per (host, port, tls)."""

    def __init__(self, max_idle_per_host: int = 256) -> None:
        self._idle: dict[PoolKey, list[_Conn]] = {}
        #: Requests sent a second time after a reused connection failed unanswered (see post).
        self.resends = 0
        self.on_resend: Callable[[str, str], None] | None = None
        self._ssl = ssl.create_default_context()
        self.max_idle = max_idle_per_host

    def put(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.closed = True
            conn.transport.close()

    async def _connect(self, ep: Endpoint, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Conn, ep.host, ep.port, ssl=self._ssl if ep.ssl else None, server_hostname=ep.host if ep.ssl else None),
                timeout,
            )
        except TimeoutError:
            raise UpstreamConnectError(f"connect to {ep.host}:{ep.port} timed out after {timeout:g}s") from None
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {ep.host}:{ep.port}: {exc.strerror or exc}") from None
        conn.key = ep.key
        return conn

    async def post(self, ep: Endpoint, body: bytes, connect_timeout: float) -> UpstreamResponse:
        """Send the request and wait for the status line and headers.

        A kept-alive connection the upstream closed just as it was reused fails with no byte
        answered; the request is then sent again on a fresh connection, once. The upstream may
        have started on it (a POST is not idempotent): so every such resend is reported to
        `on_resend` (the gateway counts, logs and meters it), never done silently."""
        request = ep.request(body)
        idle = self._idle.get(ep.key)
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport.is_closing():
                continue
            resp = UpstreamResponse(conn, self)
            conn.start(resp, request)
            try:
                await resp.headers_done
                return resp
            except UpstreamDisconnected as exc:
                if conn.got_bytes:
                    raise
                self.resends += 1
                if self.on_resend is not None:
                    self.on_resend(f"{ep.host}:{ep.port}", str(exc))
                break
        conn = await self._connect(ep, connect_timeout)
        resp = UpstreamResponse(conn, self)
        conn.start(resp, request)
        await resp.headers_done
        return resp

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                if conn.transport:
                    conn.transport.close()
        self._idle.clear()
