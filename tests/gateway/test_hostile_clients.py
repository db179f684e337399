"""The running gateway (`deploy serve`) against clients without a key: they cannot freeze it,
starve it, make it buffer bodies, or read its operator data (security review findings 5, 6).
Loopback only; each wait ends on an answer or a close."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from agentdeploy.serving.auth import hash_key
from tests.gateway.helpers import API_KEY, env_for, gateway_config

pytestmark = pytest.mark.integration

OPERATOR_KEY = "operator-key-0123456789abcdef0123456789"


def _raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes and read until the gateway closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.fixture
def gw(claude_emulator, gateway_factory):  # type: ignore[no-untyped-def]
    cfg = gateway_config(claude_emulator.base_url, operator={"key_hashes": [hash_key(OPERATOR_KEY)]},
                         http={"header_timeout_s": 0.5, "body_timeout_s": 0.5, "max_connections": 16})
    return gateway_factory(cfg, env=env_for(claude_emulator))


def test_no_key_no_body_read_slow_clients_cut_and_floods_refused(gw, claude_emulator):
    port = gw.port
    # 31 MiB declared, not one byte sent: the key is checked first, in the client's protocol.
    r = _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 32505856\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'"authentication_error"' in r
    r = _raw(port, b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 40000000\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'"type":"error"' in r
    # Only the APIs take a body: 31 MiB declared on /healthz or an unknown path is refused at once.
    assert _raw(port, b"POST /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 32505856\r\n\r\n").startswith(b"HTTP/1.1 413 ")
    assert _raw(port, b"PUT /nope HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n").startswith(b"HTTP/1.1 413 ")
    # Over the body cap with a key: 413 at once, never "100 Continue".
    r = _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + API_KEY.encode()
             + b"\r\nexpect: 100-continue\r\ncontent-length: 40000000\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 413 ")
    assert _raw(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ").startswith(b"HTTP/1.1 408 ")
    key = b"authorization: Bearer " + API_KEY.encode() + b"\r\n"
    r = _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + key + b"content-length: 100\r\n\r\n{\"mess")
    assert r.startswith(b"HTTP/1.1 408 ")
    flood = b"".join(b"x-a: %d\r\n" % i for i in range(200_000))
    assert _raw(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + flood + b"\r\n").startswith(b"HTTP/1.1 431 ")
    assert _raw(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-huge: " + b"a" * (4 << 20)).startswith(b"HTTP/1.1 431 ")
    assert _raw(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nhost: x\r\n\r\n").startswith(b"HTTP/1.1 414 ")
    assert claude_emulator.requests() == []
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
    assert "Traceback" not in gw.log_text()


def _first_answer(s: socket.socket) -> bytes:
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_connection_exhaustion_is_capped_and_pipelining_answers_every_request(gw):
    # 17 connections against a cap of 16: each asks once, and each gets an answer (no waiting
    # on a timeout): 200 while under the cap, 503 and a close for the one too many.
    held = [socket.create_connection(("127.0.0.1", gw.port), timeout=10) for _ in range(17)]
    try:
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        heads = [_first_answer(s) for s in held]
    finally:
        for s in held:
            s.close()
    assert sum(h.startswith(b"HTTP/1.1 503 ") for h in heads) >= 1
    assert sum(h.startswith(b"HTTP/1.1 200 ") for h in heads) <= 16
    # Closed connections free their places: wait for the proof (a new one is served again).
    deadline = time.monotonic() + 10
    while not _raw(gw.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").startswith(b"HTTP/1.1 200 "):
        assert time.monotonic() < deadline, "closed connections were never released"
    three = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n" * 3
    out = _raw(gw.port, three + b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
               + b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert out.endswith(b"ready")


def test_metrics_need_an_operator_key_on_the_client_port(gw):
    assert httpx.get(gw.url + "/metrics", timeout=5).status_code == 401
    assert httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {API_KEY}"}, timeout=5).status_code == 401
    r = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {OPERATOR_KEY}"}, timeout=5)
    assert r.status_code == 200
    assert "agentdeploy_gateway_requests_total" in r.text
    assert "agentdeploy_gateway_in_flight" in gw.metrics()  # the operator listener, loopback, no key
    # An operator key calls no agent.
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {OPERATOR_KEY}"},
                   json={"model": "api-agent", "messages": [{"role": "user", "content": "hi"}]}, timeout=5)
    assert r.status_code == 401
