"""The boot-path test's `docker` stand-in refuses what the node's Docker must never be asked to
run, so the boot test's green run means the unit's command line passed these checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SHIM = Path(__file__).with_name("docker_shim.py")
IMAGE = "vllm/vllm-openai:v0.31.0@sha256:" + "c1" * 32
KEY = "shim-test-key-0123456789"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run/secrets.env").write_text(f"VLLM_API_KEY={KEY}\n")
    env = {"PATH": "/usr/bin:/bin", "AGENTDEPLOY_SHIM_ROOT": str(tmp_path), "AGENTDEPLOY_SHIM_IMAGE": IMAGE,
           "VLLM_PYTHON": "/bin/false"}
    return subprocess.run([sys.executable, str(SHIM), *args], env=env, capture_output=True, text=True, timeout=60)


GOOD = ["--gpus", "all", "--network", "host", "--ipc", "host", "--env-file", "/run/secrets.env"]


@pytest.mark.parametrize(("args", "why"), [
    (["pull", "vllm/vllm-openai:v0.31.0"], "not pinned by digest"),
    (["pull", "vllm/vllm-openai:v0.30.0@sha256:" + "8a" * 32], "not the expected"),
    (["run", *GOOD, "vllm/vllm-openai:latest", "m"], "not pinned by digest"),
    (["run", *GOOD[2:], IMAGE, "m"], "--gpus all"),
    (["run", *GOOD[:4], *GOOD[6:], IMAGE, "m"], "--ipc=host"),
    (["run", *GOOD[:6], IMAGE, "m"], "--env-file"),
    (["run", *GOOD, "--env", f"VLLM_API_KEY={KEY}", IMAGE, "m"], "secret value"),
    (["run", *GOOD, IMAGE, "m", "--api-key", KEY], "secret value"),
    (["build", "."], "never runs"),
])
def test_the_shim_refuses(tmp_path, args, why):
    done = _run(tmp_path, *args)
    assert done.returncode == 125
    assert why in done.stderr


def test_the_shim_accepts_the_units_shape(tmp_path):
    """A well-formed run gets as far as exec'ing the engine (here /bin/false, exit 1)."""
    done = _run(tmp_path, "run", *GOOD, IMAGE, "m")
    assert done.returncode == 1, done.stderr
    assert _run(tmp_path, "pull", "--quiet", IMAGE).returncode == 0
