"""How the node agent sends vLLM its SIGTERM: by pid, pid file, or a command (systemd).

Only the API server process must get it: it handles SIGTERM by draining (`--shutdown-timeout`)
and then stops its engine processes itself. Signalling the whole process group would hit the
engine too and abort in-flight requests (for systemd: KillMode=mixed).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
from pathlib import Path
from typing import Protocol

DEFAULT_STOP_COMMAND = "systemctl stop --no-block vllm.service"


class VllmStopper(Protocol):
    def describe(self) -> str: ...

    async def terminate(self) -> None: ...


class PidStopper:
    def __init__(self, pid: int | None = None, pidfile: Path | None = None):
        if (pid is None) == (pidfile is None):
            raise ValueError("give exactly one of pid or pidfile")
        self._pid, self._pidfile = pid, pidfile

    def describe(self) -> str:
        return f"SIGTERM to pid {self._pid}" if self._pid else f"SIGTERM to the pid in {self._pidfile}"

    async def terminate(self) -> None:
        pid = self._pid if self._pid is not None else int(Path(self._pidfile).read_text().split()[0])  # type: ignore[arg-type]
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # already gone: nothing left to drain


class CommandStopper:
    def __init__(self, command: str = DEFAULT_STOP_COMMAND, timeout_s: float = 10.0):
        self._argv = shlex.split(command)
        self._timeout = timeout_s

    def describe(self) -> str:
        return f"run {shlex.join(self._argv)}"

    async def terminate(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self._timeout)
        except TimeoutError:
            proc.kill()
            raise RuntimeError(f"{self.describe()} did not finish in {self._timeout:.0f}s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{self.describe()} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
