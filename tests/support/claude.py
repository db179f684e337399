"""The Claude (Anthropic Messages API) emulator for tests: in a thread or as a subprocess.

    from tests.support.claude import claude_emulator  # noqa: F401  (fixture)

    def test_x(claude_emulator):
        claude_emulator.reset()
        claude_emulator.faults({"status": 429, "retry_after": 0.2})
        ... point an Anthropic upstream at claude_emulator.base_url with key claude_emulator.api_key

`ClaudeEmulatorHandle` drives the emulator through its HTTP control API, so the same calls
work for the in-thread server and for `start_claude_subprocess` (benchmarks, other processes).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.emulators import REPO_ROOT, emulator_argv
from tests.support.procs import LOOPBACK, ManagedProcess, free_port, start_process, wait_for_http

DEFAULT_KEY = "sk-ant-test-emulator-key"


@dataclass
class ClaudeEmulatorHandle:
    base_url: str
    api_key: str = DEFAULT_KEY
    _stop: Any = field(default=None, repr=False)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def faults(self, *faults: dict) -> None:
        """Queue faults; each is consumed by the next matching request(s) (see the emulator doc)."""
        self._call("POST", "/_emulator/faults", list(faults))

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def configure(self, **settings: Any) -> None:
        self._call("POST", "/_emulator/config", settings)

    def requests(self) -> list[dict]:
        return self._call("GET", "/_emulator/requests")

    def reset(self) -> None:
        """No faults, no recorded requests, empty prompt cache, default output."""
        self.clear_faults()
        self._call("DELETE", "/_emulator/requests")
        self.configure(output_tokens=12, token_delay_s=0.0, context_tokens=200_000, api_keys=[self.api_key], record=True)

    def stop(self) -> None:
        if self._stop:
            self._stop()
            self._stop = None


def start_claude_thread(api_key: str = DEFAULT_KEY) -> ClaudeEmulatorHandle:
    """Run the emulator on its own event loop in a daemon thread, on a free loopback port."""
    from aiohttp import web

    from tests.support.emulators.anthropic import ClaudeEmulator

    emu = ClaudeEmulator({api_key})
    started = threading.Event()
    box: dict[str, Any] = {}

    def runner() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app_runner = web.AppRunner(emu.app, access_log=None)
        loop.run_until_complete(app_runner.setup())
        site = web.TCPSite(app_runner, LOOPBACK, 0)
        loop.run_until_complete(site.start())
        box["port"] = app_runner.addresses[0][1]
        box["loop"] = loop
        started.set()
        loop.run_forever()
        loop.run_until_complete(app_runner.cleanup())
        loop.close()

    thread = threading.Thread(target=runner, name="claude-emulator", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("Claude emulator thread did not start")

    def stop() -> None:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(5)

    return ClaudeEmulatorHandle(f"http://{LOOPBACK}:{box['port']}", api_key, stop)


def start_claude_subprocess(log_path, api_key: str = DEFAULT_KEY, port: int | None = None, extra: list[str] | None = None, cpu: int | None = None) -> tuple[ClaudeEmulatorHandle, ManagedProcess]:
    port = port or free_port()
    argv = emulator_argv("anthropic", "--host", LOOPBACK, "--port", str(port), "--api-key", api_key, *(extra or []))
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = start_process(f"claude-emulator:{port}", argv, log_path, cwd=REPO_ROOT)
    handle = ClaudeEmulatorHandle(f"http://{LOOPBACK}:{port}", api_key, lambda: proc.stop(grace_s=2))
    wait_for_http(handle.base_url + "/_emulator/requests", timeout_s=20, process=proc)
    return handle, proc


@pytest.fixture(scope="session")
def claude_emulator_session() -> Iterator[ClaudeEmulatorHandle]:
    handle = start_claude_thread()
    yield handle
    handle.stop()


@pytest.fixture
def claude_emulator(claude_emulator_session: ClaudeEmulatorHandle) -> ClaudeEmulatorHandle:
    """The session's emulator, reset for this test."""
    claude_emulator_session.reset()
    return claude_emulator_session
