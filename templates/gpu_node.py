"""GPU node user data: cloud-init that installs the node agent, pulls the engine and starts both.

Nothing on a node is installed by a bare name from an index. The vLLM engine is its official
container image pinned by digest (the catalog's `engine_image`; Docker checks the bytes against
the digest on pull) and runs under systemd with `docker run`. The node agent is the wheel the
stack stored in its own S3 bucket, checked against the SHA-256 in this document, and its
dependencies come from a hash-pinned lock (`pip install --require-hashes --no-deps`).

Pure: a FleetPlan plus secret *ARNs* in, a cloud-config document out. The vLLM arguments come
from `vllm_args` (one source of truth for flags); the API key reaches vLLM through its
`VLLM_API_KEY` environment variable, from a root-only file the node fills at boot through its
instance role and hands to the container with `--env-file`, so no secret value is ever part of
the user data, the unit or any command line.
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass, field
from typing import Any

from agentdeploy.errors import InvalidInput
from agentdeploy.images import pinned_image_problem
from agentdeploy.naming import METRIC_NAMESPACE, NODE_HEALTH_PORT, VLLM_PORT
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.templates.render import render
from agentdeploy.templates.vllm_args import vllm_serve_args

VENV = "/opt/agentdeploy/venv"
#: Hugging Face token env var (gated model weights), fetched at boot like the vLLM key.
HF_TOKEN_ENV = "HF_TOKEN"
#: Where fetch-secrets.sh writes the node's secrets (root-only); the engine gets it by --env-file.
SECRETS_ENV_FILE = "/run/agentdeploy/secrets.env"
#: The node agent's dependencies, hash-pinned (scripts/lock-node-requirements.py writes it).
NODE_REQUIREMENTS = "/etc/agentdeploy/node-requirements.txt"
#: Model weights: on the host (install.sh links it to the instance's NVMe where there is one),
#: mounted where the image's Hugging Face cache lives (HF_HOME).
HF_CACHE_HOST = "/opt/agentdeploy/hf"
HF_CACHE_CONTAINER = "/root/.cache/huggingface"
#: The engine container's name (one per node); the unit removes a leftover before starting.
ENGINE_CONTAINER = "vllm"
DOCKER = "/usr/bin/docker"
#: Where install.sh stores the downloaded wheel (its file name must stay the wheel's).
WHEEL_DIR = "/opt/agentdeploy/wheels"
#: The units append their output here (LogsDirectory=agentdeploy); logs.sh ships these files.
LOG_DIR = "/var/log/agentdeploy"
LOG_FILES = (("cloud-init", "/var/log/cloud-init-output.log"), ("vllm", f"{LOG_DIR}/vllm.log"),
             ("node-agent", f"{LOG_DIR}/node-agent.log"), ("ready", f"{LOG_DIR}/ready.log"),
             ("secrets", f"{LOG_DIR}/secrets.log"))


@dataclass(frozen=True)
class GpuNodeSpec:
    stack: str
    agent: str
    region: str
    fleet: FleetPlan
    #: env var name -> Secrets Manager ARN, fetched at boot (VLLM_API_KEY, optionally HF_TOKEN).
    secret_refs: dict[str, str] = field(default_factory=dict)
    #: The vLLM engine image, repository:tag@sha256:<digest> (the catalog's engine_image).
    engine_image: str = ""
    #: The node agent's wheel in the stack's bucket, and its SHA-256 (install.sh refuses others).
    node_wheel_bucket: str = ""
    node_wheel_key: str = ""
    node_wheel_sha256: str = ""
    #: CloudWatch Logs group the node ships its logs to ("" = none).
    log_group: str = ""
    #: What the node agent drains from on a spot notice or scale-in (empty: it discovers them).
    target_group_arn: str = ""
    asg_name: str = ""
    lifecycle_hook: str = "drain"
    #: The launching lifecycle hook ready.sh completes once the node is healthy ("" = none).
    ready_hook: str = ""


def check_engine_image(ref: str, where: str = "GPU node") -> str:
    """The engine image reference, refused unless pinned by digest (a tag can be moved)."""
    problem = "no engine image given (the catalog's engine_image)" if not ref else pinned_image_problem(ref)
    if problem:
        raise InvalidInput(f"{where}: {problem}",
                           hint="set engine_image.reference in a catalog override, or agentdeploy:vllmImage in the stack config, "
                                "to repository:tag@sha256:<digest>")
    return ref


def vllm_argv(fleet: FleetPlan, engine_image: str) -> list[str]:
    """vllm.service's command: the engine image run by Docker, every flag from `vllm_args`.

    The image's entrypoint is `vllm serve`, so the arguments after the image are exactly
    `vllm_serve_args`. All GPUs; the host's network (vLLM binds port 8000 itself, the node
    agent reads it on loopback); the host's IPC namespace, which vLLM's Docker guide asks for
    (PyTorch shares tensors between its processes through /dev/shm); the weights cache on the
    host; secrets by `--env-file` only.
    """
    return [DOCKER, "run", "--rm", "--name", ENGINE_CONTAINER, "--gpus", "all", "--network", "host", "--ipc", "host",
            "--volume", f"{HF_CACHE_HOST}:{HF_CACHE_CONTAINER}", "--env", f"HF_HOME={HF_CACHE_CONTAINER}",
            "--env", "VLLM_NO_USAGE_STATS=1", "--env-file", SECRETS_ENV_FILE,
            check_engine_image(engine_image), *vllm_serve_args(fleet, host="0.0.0.0", port=VLLM_PORT)]


def node_agent_argv() -> list[str]:
    return [f"{VENV}/bin/python", "-m", "agentdeploy.serving.node"]


def node_context(spec: GpuNodeSpec) -> dict[str, Any]:
    fleet = spec.fleet
    return {
        "stack": spec.stack,
        "agent": spec.agent,
        "region": spec.region,
        "served_model_name": fleet.served_model_name,
        "vllm_port": VLLM_PORT,
        "health_port": NODE_HEALTH_PORT,
        "shutdown_timeout_s": fleet.shutdown_timeout_s,
        "metric_namespace": METRIC_NAMESPACE,
        "secret_refs": dict(spec.secret_refs),
        "engine_image": check_engine_image(spec.engine_image, f"GPU node of {spec.stack}/{spec.agent}"),
        "engine_container": ENGINE_CONTAINER,
        "docker": DOCKER,
        "node_requirements": NODE_REQUIREMENTS,
        "secrets_env_file": SECRETS_ENV_FILE,
        "hf_cache_host": HF_CACHE_HOST,
        "node_wheel_bucket": spec.node_wheel_bucket,
        "node_wheel_key": spec.node_wheel_key,
        "node_wheel_name": spec.node_wheel_key.rsplit("/", 1)[-1],
        "node_wheel_sha256": spec.node_wheel_sha256,
        "wheel_dir": WHEEL_DIR,
        "log_group": spec.log_group,
        "log_files": LOG_FILES,
        "log_dir": LOG_DIR,
        "vllm_argv": vllm_argv(fleet, spec.engine_image),
        "target_group_arn": spec.target_group_arn,
        "asg_name": spec.asg_name,
        "lifecycle_hook": spec.lifecycle_hook,
        "ready_hook": spec.ready_hook,
        "node_agent_argv": node_agent_argv(),
    }


def node_files(spec: GpuNodeSpec) -> list[dict[str, str]]:
    """Every file the node gets, rendered: (path, mode, content). Scripts are checked on their own in tests."""
    ctx = node_context(spec)
    table = [
        ("/etc/agentdeploy/node.env", "0644", "scripts/node.env.j2"),
        ("/etc/agentdeploy/secrets.list", "0644", "scripts/secrets.list.j2"),
        (NODE_REQUIREMENTS, "0644", "scripts/node-requirements.txt.j2"),
        ("/opt/agentdeploy/bin/install.sh", "0755", "scripts/install.sh.j2"),
        ("/opt/agentdeploy/bin/fetch-secrets.sh", "0755", "scripts/fetch-secrets.sh.j2"),
        ("/opt/agentdeploy/bin/ready.sh", "0755", "scripts/ready.sh.j2"),
        ("/etc/systemd/system/agentdeploy-ready.service", "0644", "systemd/agentdeploy-ready.service.j2"),
        ("/etc/systemd/system/agentdeploy-secrets.service", "0644", "systemd/agentdeploy-secrets.service.j2"),
        ("/etc/systemd/system/vllm.service", "0644", "systemd/vllm.service.j2"),
        ("/etc/systemd/system/agentdeploy-node-agent.service", "0644", "systemd/agentdeploy-node-agent.service.j2"),
    ]
    if spec.log_group:
        table += [("/opt/agentdeploy/bin/logs.sh", "0755", "scripts/logs.sh.j2"),
                  ("/etc/agentdeploy/cloudwatch-agent.json", "0644", "scripts/cloudwatch-agent.json.j2")]
    return [{"path": p, "mode": m, "content": render(t, **ctx)} for p, m, t in table]


def render_user_data(spec: GpuNodeSpec) -> str:
    return render("cloud-init/gpu-node.yaml.j2", stack=spec.stack, agent=spec.agent, files=node_files(spec),
                  ship_logs=bool(spec.log_group))


def encode_user_data(text: str) -> str:
    """The launch template's `userData`: base64 of the gzip-compressed document.

    EC2 allows 16 KB of user data before base64; the node's files are about 20 KB as text and
    cloud-init takes gzip-compressed user data as is (it decompresses before parsing). mtime 0
    keeps the bytes the same for the same text, so an unchanged node never looks changed to
    Pulumi (which would roll the fleet).
    """
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode()


def decode_user_data(encoded: str) -> str:
    """The document back from `userData` (gzip-compressed or not), for checks and tests."""
    raw = base64.b64decode(encoded)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
