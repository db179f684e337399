"""The HTTP server against hostile clients without a key (security review finding 5): slow
headers, slow bodies, header floods, long URLs, too many connections, a huge declared body,
a body sent without a key, and pipelining up to a `Connection: close`. Loopback, bounded:
every wait ends on an answer or a close, with a generous timeout only as a backstop.
"""

from __future__ import annotations

import asyncio

from agentdeploy.serving.http1 import Headers, Response
from tests.gateway.test_http1 import _exchange, _serve, run


async def _closed_answer(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data`, then read until the server closes the connection."""
    return await _exchange(port, data, timeout=timeout)


def test_slow_headers_and_slow_bodies_get_408_and_the_connection_closes() -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        server, port, _ = await _serve(header_timeout_s=0.3, body_timeout_s=0.3)
        try:
            partial_headers = await _closed_answer(port, b"GET /echo HTTP/1.1\r\nhost: x\r\nx-slow: ")
            partial_body = await _closed_answer(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
            healthy = await _exchange(port, b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n", until=b"|")
            return partial_headers, partial_body, healthy
        finally:
            await server.stop_accepting()
            await server.close(1)

    partial_headers, partial_body, healthy = run(scenario())
    assert partial_headers.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert partial_body.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in partial_headers
    assert b"connection: close" in partial_body
    assert healthy.startswith(b"HTTP/1.1 200 OK")


def test_header_floods_and_long_urls_are_refused_before_they_cost_anything() -> None:
    async def scenario() -> dict[str, bytes]:
        server, port, _ = await _serve()
        try:
            flood = b"".join(b"x-a: %d\r\n" % i for i in range(400_000))  # 5.6 MB of repeated headers
            return {
                "count": await _closed_answer(port, b"GET /echo HTTP/1.1\r\nhost: x\r\n" + flood + b"\r\n"),
                "bytes": await _closed_answer(port, b"GET /echo HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 128 * 1024 + b"\r\n\r\n"),
                "line": await _closed_answer(port, b"GET /echo HTTP/1.1\r\nhost: x\r\nx-huge: " + b"a" * (8 << 20)),
                "url": await _closed_answer(port, b"GET /echo?" + b"q" * 9000 + b" HTTP/1.1\r\nhost: x\r\n\r\n"),
                "no host": await _closed_answer(port, b"GET /echo HTTP/1.1\r\n\r\n"),
                "after": await _exchange(port, b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n", until=b"|"),
            }
        finally:
            await server.stop_accepting()
            await server.close(1)

    out = run(scenario())
    for case in ("count", "bytes", "line"):
        assert out[case].startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), (case, out[case][:80])
    assert out["url"].startswith(b"HTTP/1.1 414 Request-URI Too Long\r\n")
    assert out["no host"].startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert out["after"].startswith(b"HTTP/1.1 200 OK")


def test_the_connection_cap_refuses_the_one_too_many_and_frees_on_close() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server, port, _ = await _serve(max_connections=4)
        try:
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
            while len(server.connections) < 4:
                await asyncio.sleep(0.01)
            refused = await _closed_answer(port, b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
            held[0][1].close()
            while len(server.connections) >= 4:
                await asyncio.sleep(0.01)
            served = await _exchange(port, b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n", until=b"|")
            for _, w in held[1:]:
                w.close()
            return refused, served
        finally:
            await server.stop_accepting()
            await server.close(1)

    refused, served = run(scenario())
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert served.startswith(b"HTTP/1.1 200 OK")


def _needs_key(method: str, path: str, headers: Headers) -> Response | None:
    return None if headers.get("authorization") else Response(401, text="key first")


def test_a_huge_declared_body_and_a_body_without_a_key_are_answered_before_it_is_read() -> None:
    """Only the headers are sent: an answer proves the server did not wait for the body."""
    async def scenario() -> dict[str, bytes]:
        server, port, _ = await _serve(max_body=1 << 20, gate=_needs_key)
        try:
            return {
                "413": await _closed_answer(port, b"POST /echo HTTP/1.1\r\nhost: x\r\nauthorization: k\r\ncontent-length: 40000000\r\n\r\n"),
                "413 expect": await _closed_answer(port, b"POST /echo HTTP/1.1\r\nhost: x\r\nauthorization: k\r\n"
                                                         b"expect: 100-continue\r\ncontent-length: 40000000\r\n\r\n"),
                "401": await _closed_answer(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 32505856\r\n\r\n"),
                "401 expect": await _closed_answer(port, b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 10\r\n\r\n"),
            }
        finally:
            await server.stop_accepting()
            await server.close(1)

    out = run(scenario())
    for case in ("413", "413 expect"):
        assert out[case].startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), out[case][:60]
    for case in ("401", "401 expect"):
        assert out[case].startswith(b"HTTP/1.1 401 Unauthorized\r\n"), out[case][:60]
        assert out[case].endswith(b"key first")
    assert all(b"100 Continue" not in v for v in out.values())


def test_every_pipelined_request_before_a_close_is_answered_in_order() -> None:
    async def scenario() -> bytes:
        server, port, _ = await _serve()
        try:
            three = b"".join(b"GET /echo?%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(3))
            return await _closed_answer(port, three + b"GET /echo?last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                                              b"GET /echo?never HTTP/1.1\r\nhost: x\r\n\r\n")
        finally:
            await server.stop_accepting()
            await server.close(1)

    out = run(scenario())
    answers = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert [a.rsplit(b"GET /echo ", 1)[1].split(b" ")[0] for a in answers] == [b"0", b"1", b"2", b"last"]
    assert b"connection: close" in answers[-1]
    assert all(b"connection: close" not in a for a in answers[:-1])
    assert b"never" not in out


def test_bodies_held_by_all_connections_together_are_capped() -> None:
    async def scenario() -> tuple[bytes, bytes, int, int]:
        server, port, _ = await _serve(max_body=1000, max_buffered_body_bytes=100)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 90\r\n\r\n" + b"a" * 80)  # 80 held, unfinished
            await w.drain()
            while server.buffered < 80:
                await asyncio.sleep(0.01)
            refused = await _closed_answer(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n" + b"b" * 50)
            w.close()
            while server.buffered:
                await asyncio.sleep(0.01)  # the unfinished body is given back when its client leaves
            served = await _exchange(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n" + b"c" * 50, until=b"c" * 50)
            after = server.buffered
            return refused, served, after, len(server.connections)
        finally:
            await server.stop_accepting()
            await server.close(1)

    refused, served, after, _ = run(scenario())
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert served.startswith(b"HTTP/1.1 200 OK")
    assert after == 0  # an answered request's body no longer counts


def test_a_client_that_stops_reading_is_cut_after_the_send_timeout() -> None:
    import socket

    async def scenario() -> list[BaseException]:
        server, port, streams = await _serve(send_timeout_s=0.3)
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few writes
            sock.connect(("127.0.0.1", port))
            _, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"GET /stream?hold HTTP/1.1\r\nhost: x\r\n\r\n")
            while not server.tasks:
                await asyncio.sleep(0.01)
            streams.release.set()  # the handler now writes 12.8 MB that nobody reads
            await asyncio.wait_for(streams.finished.wait(), 20)
            writer.close()
            return streams.errors
        finally:
            await server.stop_accepting()
            await server.close(1)

    errors = run(scenario())
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionResetError)
