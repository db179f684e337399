"""The Admin API emulator served on loopback from a background thread, one per test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.emulators.anthropic_admin import AdminEmulator
from tests.support.moto import free_port

ADMIN_KEY = "sk-ant-admin01-CANARY-7f3a9c-never-print-me"


@dataclass
class AdminServer:
    url: str
    emulator: AdminEmulator
    key: str = ADMIN_KEY


@pytest.fixture
def admin_api() -> Iterator[AdminServer]:
    from aiohttp import web

    emulator = AdminEmulator(ADMIN_KEY)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(emulator.app, access_log=None)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield AdminServer(url=f"http://127.0.0.1:{port}", emulator=emulator)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
