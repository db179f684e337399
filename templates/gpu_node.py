"""GPU node user data: cloud-init that installs vLLM and the node agent and starts both.

The node agent comes from the wheel the stack stored in its own S3 bucket, checked against
the SHA-256 in this document (never `pip install agentdeploy` from an index: that name is not
ours there); vLLM is a pinned requirement.

Pure: a FleetPlan plus secret *ARNs* in, a cloud-config document out. The vLLM command line
comes from `vllm_args` (one source of truth for flags); the API key reaches vLLM through
its `VLLM_API_KEY` environment variable, loaded from a root-only file that the node fills at
boot through its instance role, so no secret value is ever part of the user data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentdeploy.naming import METRIC_NAMESPACE, NODE_HEALTH_PORT, VLLM_PORT
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.templates.render import render
from agentdeploy.templates.vllm_args import vllm_serve_argv

VENV = "/opt/agentdeploy/venv"
#: Hugging Face token env var (gated model weights), fetched at boot like the vLLM key.
HF_TOKEN_ENV = "HF_TOKEN"
DEFAULT_VLLM_REQUIREMENT = "vllm==0.32.0"
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
    vllm_requirement: str = DEFAULT_VLLM_REQUIREMENT
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


def vllm_argv(fleet: FleetPlan) -> list[str]:
    """The `vllm serve` command line, from `vllm_args` (one source of truth for flags), run
    from the node's virtualenv (systemd has no PATH to it)."""
    return [str(a) for a in vllm_serve_argv(fleet, host="0.0.0.0", port=VLLM_PORT, executable=f"{VENV}/bin/vllm")]


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
        "vllm_requirement": spec.vllm_requirement,
        "node_wheel_bucket": spec.node_wheel_bucket,
        "node_wheel_key": spec.node_wheel_key,
        "node_wheel_name": spec.node_wheel_key.rsplit("/", 1)[-1],
        "node_wheel_sha256": spec.node_wheel_sha256,
        "wheel_dir": WHEEL_DIR,
        "log_group": spec.log_group,
        "log_files": LOG_FILES,
        "log_dir": LOG_DIR,
        "vllm_argv": vllm_argv(fleet),
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
