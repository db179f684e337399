"""The `vllm serve` command line for a GPU fleet, built from the plan and nothing else.

One source of truth for vLLM's flags: the cloud-init templates, the systemd unit and the tests
all take the argv from here. Pure functions; no vLLM import (the GPU node has vLLM, the laptop
running `deploy render` does not).

Secrets: vLLM reads its API key from the `VLLM_API_KEY` environment variable when `--api-key`
is absent, so the key never appears in argv (where `ps`, /proc/<pid>/cmdline and the rendered
user data would show it). The unit loads it from a root-only EnvironmentFile.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import VLLM_KEY_ENV, VLLM_PORT
from agentdeploy.planner.plan import FleetPlan

#: EC2 gives a spot instance two minutes' notice; draining must finish inside it.
SPOT_NOTICE_S = 120
#: What the node agent needs before SIGTERM (deregistration, load balancer propagation) and
#: after vLLM exits (lifecycle hook): the drain window is the notice minus this.
DRAIN_OVERHEAD_S = 15
#: Name of the systemd environment variable holding the argument list (see systemd_environment).
SYSTEMD_ARGS_VAR = "VLLM_SERVE_ARGS"

_SAFE_ARG = re.compile(r"[A-Za-z0-9_./:@+=,-]+")  # fullmatch: `$` would pass a final newline


def max_num_seqs(fleet: FleetPlan) -> int:
    """vLLM's batch size cap, equal to the concurrency the plan allows per replica.

    Why equal and not larger: requests beyond it then wait in vLLM's queue, which is exactly
    the `num_requests_waiting` signal the autoscaler and the gateway's spill-over read. A larger
    batch would hide the overload as slower tokens for everyone instead.
    """
    return max(1, fleet.max_concurrency_per_replica)


def _check(fleet: FleetPlan) -> None:
    problems: list[str] = []
    limit = SPOT_NOTICE_S - DRAIN_OVERHEAD_S
    if not 0 < fleet.shutdown_timeout_s <= limit:
        problems.append(
            f"fleet.shutdown_timeout_s={fleet.shutdown_timeout_s}: must be 1..{limit} s so the drain"
            f" ends inside the {SPOT_NOTICE_S} s spot notice"
        )
    if not 0 < fleet.gpu_memory_utilization <= 1:
        problems.append(f"fleet.gpu_memory_utilization={fleet.gpu_memory_utilization}: must be in (0, 1]")
    if fleet.max_model_len <= 0:
        problems.append(f"fleet.max_model_len={fleet.max_model_len}: must be positive")
    for field in ("hf_repo", "served_model_name"):
        value = getattr(fleet, field)
        if not _SAFE_ARG.fullmatch(value):
            problems.append(f"fleet.{field}={value!r}: only letters, digits and ._/:@+=,- are allowed")
    if problems:
        raise InvalidInput("the fleet plan cannot be turned into a vLLM command line", details=problems)


def vllm_serve_args(fleet: FleetPlan, *, host: str = "0.0.0.0", port: int = VLLM_PORT) -> list[str]:
    """The arguments after `vllm serve` (model first, as vLLM's positional `model_tag`)."""
    _check(fleet)
    return [
        fleet.hf_repo,
        "--served-model-name", fleet.served_model_name,
        "--host", host,
        "--port", str(port),
        "--max-model-len", str(fleet.max_model_len),
        "--gpu-memory-utilization", repr(float(fleet.gpu_memory_utilization)),
        "--max-num-seqs", str(max_num_seqs(fleet)),
        # Shared prefixes (system prompt, tools) are the norm for agents: reuse their KV cache.
        "--enable-prefix-caching",
        # SIGTERM then rejects new requests and finishes in-flight ones for up to this long.
        "--shutdown-timeout", str(fleet.shutdown_timeout_s),
        # GET /load counts requests until their last byte is sent: the node agent's drain waits
        # on it before SIGTERM (the queue gauges miss a stream still flushing its last chunks).
        "--enable-server-load-tracking",
        # A replica spans every GPU of its instance (a model too big for one, e.g. on p4d/p5):
        # without this, vLLM loads the whole model onto one GPU and runs out of memory.
        *(["--tensor-parallel-size", str(fleet.tensor_parallel_size)] if fleet.tensor_parallel_size > 1 else []),
    ]


def vllm_serve_argv(
    fleet: FleetPlan, *, host: str = "0.0.0.0", port: int = VLLM_PORT, executable: str = "vllm"
) -> list[str]:
    """The full argv: `vllm serve MODEL --flag value ...`. Never carries the API key."""
    return [executable, "serve", *vllm_serve_args(fleet, host=host, port=port)]


def shell_command(argv: Sequence[str]) -> str:
    """A POSIX-shell-quoted command line (for scripts and docs)."""
    return shlex.join(argv)


def systemd_environment(fleet: FleetPlan, *, host: str = "0.0.0.0", port: int = VLLM_PORT) -> str:
    """An `Environment=` line carrying the arguments, for `ExecStart=... serve $VLLM_SERVE_ARGS`.

    systemd splits an unbraced `$VAR` on whitespace into separate arguments; every argument is
    checked to contain no whitespace, quotes, `%` or `$`, so that split is exact and nothing is
    expanded. The API key is not here: it comes from an EnvironmentFile as VLLM_API_KEY.
    """
    args = vllm_serve_args(fleet, host=host, port=port)
    unsafe = [a for a in args if not _SAFE_ARG.fullmatch(a)]
    if unsafe:
        raise InvalidInput(f"vLLM arguments not safe for a systemd Environment= line: {unsafe}")
    return f'Environment="{SYSTEMD_ARGS_VAR}={" ".join(args)}"'


def required_environment() -> dict[str, str]:
    """Variables the vLLM process needs at run time, by name only (values are secrets)."""
    return {VLLM_KEY_ENV: "API key clients must send as `Authorization: Bearer ...`"}
