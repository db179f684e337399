"""Process helpers for integration tests: ports, process groups, readiness, logs.

Why process groups: a vLLM server is an API process plus engine and worker children (~1.4 GB);
killing only the parent leaves them running. Every helper here starts its child in a new
session and stops the whole group, and keeps the child's output in a file so a failing test can
show why the process died.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (bind to 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path | str, max_chars: int = 4000) -> str:
    """The end of a log file, for failure messages."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return "<no log>"
    return data[-max_chars:].decode("utf-8", "replace")


@dataclass
class ManagedProcess:
    """A child process running in its own session, with its output in `log_path`."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, max_chars: int = 4000) -> str:
        return tail(self.log_path, max_chars)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the whole process group (no-op when it is already gone)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def signal_children(self, sig: int) -> list[int]:
        """Send `sig` to every member of the group but its leader (for vLLM: the engine core,
        its worker and the resource tracker, not the API server); returns their pids."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.pid:
                continue
            try:
                # Fields after the command name, which is in parentheses: state ppid pgrp ...
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[2]) == self.pid:
                try:
                    os.kill(int(entry.name), sig)
                    pids.append(int(entry.name))
                except ProcessLookupError:
                    pass
        return pids

    def terminate(self) -> None:
        """SIGTERM the group: lets servers with a graceful shutdown drain."""
        self.signal_group(signal.SIGTERM)

    def kill(self, wait_s: float = 10.0) -> None:
        """SIGKILL the whole group and reap the leader."""
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
        self._wait_group_gone(wait_s)

    def wait(self, timeout: float) -> int | None:
        """Exit code of the leader, or None if it is still running after `timeout`."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL whatever of the group is left after `grace_s`."""
        if self.alive():
            self.terminate()
            self.wait(grace_s)
        self.kill()

    def _wait_group_gone(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(self.popen.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)


def start_process(
    name: str,
    argv: Sequence[str],
    log_path: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> ManagedProcess:
    """Start `argv` in a new session with stdout+stderr appended to `log_path`."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path, argv=list(argv))


class ProcessDied(RuntimeError):
    """The process exited while we were waiting for it to become ready."""


def wait_for_http(
    url: str,
    *,
    timeout_s: float,
    process: ManagedProcess | None = None,
    ok: Callable[[int], bool] = lambda status: status == 200,
    interval_s: float = 0.25,
) -> None:
    """Poll `url` until it answers with a status `ok` accepts; bounded by `timeout_s`.

    Fails early (with the log tail) when `process` exits meanwhile, instead of waiting out the
    whole timeout for a server that is already dead.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise ProcessDied(
                f"{process.name} exited with {process.popen.returncode} before {url} was ready;"
                f" log {process.log_path}:\n{process.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                if ok(resp.status):
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            if ok(e.code):
                return
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(interval_s)
    where = f"; log {process.log_path}:\n{process.log_tail()}" if process else ""
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s (last: {last}){where}")
