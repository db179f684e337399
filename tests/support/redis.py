"""A real redis-server on loopback for tests of shared gateway state (budgets across replicas).

Use from a conftest.py:  from tests.support.redis import redis_server, redis_url  # noqa: F401

- `redis_server` (session): a `RedisServer` (url, port, flushall(), stop()).
- `redis_url` (session): its URL, e.g. redis://127.0.0.1:PORT/0.
- `fresh_redis_url` (function): the same URL after FLUSHALL, for tests that need an empty db.

No persistence (no RDB, no AOF), data dir in a temp folder. When redis-server is not on PATH
(env REDIS_SERVER may name it) the fixtures FAIL with how to install it, and skip only when
AGENTDEPLOY_ALLOW_SKIP_REDIS=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import LOOPBACK, ManagedProcess, free_port, start_process

ALLOW_SKIP_ENV = "AGENTDEPLOY_ALLOW_SKIP_REDIS"


class RedisUnavailable(RuntimeError):
    pass


def redis_server_binary() -> str:
    found = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not found or not Path(found).exists():
        raise RedisUnavailable(
            "redis-server not found on PATH (or env REDIS_SERVER); install it with"
            " `apt-get install redis-server`"
        )
    return found


def _command(port: int, *parts: str, timeout: float = 1.0) -> bytes:
    """Send one RESP command and return the raw first reply (no client library needed)."""
    payload = f"*{len(parts)}\r\n".encode() + b"".join(
        f"${len(p.encode())}\r\n{p}\r\n".encode() for p in parts
    )
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(1024)


@dataclass
class RedisServer:
    process: ManagedProcess
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def ping(self) -> bool:
        try:
            return _command(self.port, "PING").startswith(b"+PONG")
        except OSError:
            return False

    def flushall(self) -> None:
        reply = _command(self.port, "FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def stop(self) -> None:
        self.process.stop(grace_s=2.0)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_redis(port: int | None = None, timeout_s: float = 15.0) -> RedisServer:
    binary = redis_server_binary()
    port = port or free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
    argv = [
        binary,
        "--port", str(port),
        "--bind", LOOPBACK,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--protected-mode", "yes",
    ]
    process = start_process(f"redis:{port}", argv, data_dir / "redis.log")
    server = RedisServer(process=process, port=port, data_dir=data_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.ping():
            return server
        if not process.alive():
            break
        time.sleep(0.05)
    log = process.log_tail()
    server.stop()
    raise RuntimeError(f"redis-server on port {port} did not answer PING:\n{log}")


def _require_redis() -> None:
    try:
        redis_server_binary()
    except RedisUnavailable as e:
        if os.environ.get(ALLOW_SKIP_ENV) == "1":
            pytest.skip(f"{e} (skipped because {ALLOW_SKIP_ENV}=1)")
        pytest.fail(f"{e}. To skip Redis tests on purpose set {ALLOW_SKIP_ENV}=1.", pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    _require_redis()
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def fresh_redis_url(redis_server: RedisServer) -> str:
    redis_server.flushall()
    return redis_server.url
