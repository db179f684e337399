"""Requests and responses as the gateway's handlers see them, independent of the socket.

A `Request` and a `StreamResponse` talk to their connection through the small `Wire`
protocol (send bytes, say whether a streamed head went out, whether the connection stays
open): the HTTP/1.1 server in http1.py is one; a test can be another.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Wire(Protocol):
    """The connection a request came in on, as its response needs it."""

    responding: bool
    keep_alive: bool

    async def send(self, data: bytes) -> None: ...


class Headers(dict[str, str]):
    """Request headers by lower-case name (a repeated header's values joined with ", ")."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive", "_conn")

    def __init__(self, method: str, path: str, query: str, headers: Headers, body: bytes, conn: Wire,
                 keep_alive: bool = True) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        #: False for the request that ends its connection (`Connection: close`, HTTP/1.0).
        self.keep_alive = keep_alive
        self._conn = conn

    @property
    def content_length(self) -> int:
        """The body's size as read (whether it came with Content-Length or chunked)."""
        return len(self.body)

    async def read(self) -> bytes:
        return self.body

    @property
    def responding(self) -> bool:
        """A streamed answer's head has gone out: no status can be sent any more."""
        return self._conn.responding


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
        self._conn: Wire | None = None
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


@dataclass
class Router:
    """(method, path) -> handler: exact paths first, then `(method, regex)` for paths that carry
    an id (`/v1/messages/batches/{id}`). `knows` tells a wrong method (405) from no route (404)."""

    exact: Mapping[tuple[str, str], Handler]
    patterns: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)

    def find(self, method: str, path: str) -> Handler | None:
        found = self.exact.get((method, path))
        if found is not None:
            return found
        return next((h for m, rx, h in self.patterns if m == method and rx.fullmatch(path)), None)

    def knows(self, path: str) -> bool:
        return any(p == path for _, p in self.exact) or any(rx.fullmatch(path) for _, rx, _ in self.patterns)

