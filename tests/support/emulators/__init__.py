"""Local stand-ins for the remote APIs the serving side talks to: the Claude Messages API
(anthropic.py), the Anthropic Admin API's usage and cost reports (anthropic_admin.py) and EC2
instance metadata (imds.py).

Test infrastructure, not product: they live under tests/ so neither the wheel nor the gateway
image ships them. Each also runs on its own, from the repository root, for local try-outs and
benchmarks, e.g. `python -m tests.support.emulators.anthropic --port 8765 --api-key KEY`.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The repository root: where `python -m tests.support.emulators.<name>` resolves.
REPO_ROOT = Path(__file__).resolve().parents[3]


def emulator_argv(name: str, *args: str) -> list[str]:
    """The command line running emulator `name` (anthropic, anthropic_admin, imds) as a process;
    start it with cwd=REPO_ROOT."""
    return [sys.executable, "-m", f"tests.support.emulators.{name}", *args]
