"""The request path's lean HTTP/1.1 client against a raw socket server that misbehaves on purpose."""

import asyncio

import pytest

from agentdeploy.serving.httpclient import Endpoint, Pool, UpstreamConnectError, UpstreamDisconnected

CHUNKED = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
           b"6\r\nhello \r\n6;ext=1\r\nworld!\r\n0\r\n\r\n")
SIZED = b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: 11\r\n\r\n{\"e\":\"429\"}"


async def _server(responses: list[bytes], byte_by_byte: bool = False, close_after: bool = False):
    """Serve one canned response per request; optionally dribble bytes or close after answering."""
    served = {"connections": 0}

    async def handle(reader, writer):
        served["connections"] += 1
        while responses:
            data = await reader.readuntil(b"\r\n\r\n")
            length = int([ln.split(b":")[1] for ln in data.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
            await reader.readexactly(length)
            out = responses.pop(0)
            if byte_by_byte:
                for i in range(len(out)):
                    writer.write(out[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(0)
            else:
                writer.write(out)
            if close_after:
                await writer.drain()
                writer.close()
                return
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], served


async def _read_all(resp) -> bytes:
    out = b""
    while chunk := await resp.content.readany():
        out += chunk
    return out


def test_chunked_body_split_at_every_byte_and_connection_reuse():
    async def run():
        server, port, served = await _server([CHUNKED, CHUNKED], byte_by_byte=True)
        pool = Pool()
        ep = Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions", {"authorization": "Bearer k"})
        for _ in range(2):
            resp = await pool.post(ep, b"{}", 1.0)
            assert resp.status == 200
            assert resp.headers["content-type"] == "text/event-stream"
            assert await _read_all(resp) == b"hello world!"
            resp.release()
        assert served["connections"] == 1  # kept alive and reused
        pool.close()
        server.close()

    asyncio.run(run())


def test_sized_error_body_and_headers():
    async def run():
        server, port, _ = await _server([SIZED])
        pool = Pool()
        resp = await pool.post(Endpoint(f"http://127.0.0.1:{port}/v1/messages", {}), b"{}", 1.0)
        assert resp.status == 429
        assert resp.headers["retry-after"] == "3"
        assert await resp.content.read() == b'{"e":"429"}'
        resp.release()
        pool.close()
        server.close()

    asyncio.run(run())


def test_stale_keepalive_connection_is_replaced_and_cut_body_raises():
    async def run():
        server, port, served = await _server([CHUNKED, CHUNKED], close_after=True)
        pool = Pool()
        ep = Endpoint(f"http://127.0.0.1:{port}/x", {})
        resp = await pool.post(ep, b"{}", 1.0)
        await _read_all(resp)
        resp.release()
        await asyncio.sleep(0.05)  # the server closed the idle connection meanwhile
        resp = await pool.post(ep, b"{}", 1.0)
        assert await _read_all(resp) == b"hello world!"
        assert served["connections"] == 2
        resp.release()
        cut = CHUNKED[: CHUNKED.index(b"world")]
        server2, port2, _ = await _server([cut], close_after=True)
        resp = await pool.post(Endpoint(f"http://127.0.0.1:{port2}/x", {}), b"{}", 1.0)
        with pytest.raises(UpstreamDisconnected):
            await _read_all(resp)
        pool.close()
        server.close()
        server2.close()

    asyncio.run(run())


def test_connection_refused_is_a_connect_error():
    async def run():
        server, port, _ = await _server([])
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamConnectError, match="cannot connect"):
            await Pool().post(Endpoint(f"http://127.0.0.1:{port}/x", {}), b"{}", 1.0)

    asyncio.run(run())


def test_a_post_resent_after_a_reused_connection_dies_unanswered_is_reported():
    """The upstream takes the second request on a kept-alive connection and closes without a
    byte: the client sends it once more on a fresh connection, and says so (never silently)."""
    async def run():
        seen = {"connections": 0, "requests": 0}

        async def handle(reader, writer):
            seen["connections"] += 1
            while True:
                try:
                    data = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = int([ln.split(b":")[1] for ln in data.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
                await reader.readexactly(length)
                seen["requests"] += 1
                if seen["requests"] == 2:
                    break  # received, never answered
                writer.write(CHUNKED)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Pool()
        reported = []
        pool.on_resend = lambda target, why: reported.append((target, why))
        ep = Endpoint(f"http://127.0.0.1:{port}/x", {})
        for _ in range(2):
            resp = await pool.post(ep, b"{}", 1.0)
            assert await _read_all(resp) == b"hello world!"
            resp.release()
        assert seen == {"connections": 2, "requests": 3}
        assert pool.resends == 1
        assert reported
        assert reported[0][0] == f"127.0.0.1:{port}"
        pool.close()
        server.close()

    asyncio.run(run())


def test_malformed_framing_is_a_disconnect_not_a_crash():
    async def run():
        bad = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
        server, port, _ = await _server([bad])
        pool = Pool()
        resp = await pool.post(Endpoint(f"http://127.0.0.1:{port}/x", {}), b"{}", 1.0)
        with pytest.raises(UpstreamDisconnected, match="malformed"):
            await _read_all(resp)
        pool.close()
        server.close()

    asyncio.run(run())
