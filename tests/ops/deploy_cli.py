"""Running the `deploy` console script as a user does, and checking what they would see."""

from __future__ import annotations

import os
import shutil
import subprocess

DEPLOY = shutil.which("deploy") or "deploy"


def deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DEPLOY, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert text in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
