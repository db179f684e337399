"""GPU node user data, checked with the real validators: cloud-init's own schema check,
shellcheck for the scripts, systemd-analyze for the units."""

from __future__ import annotations

import base64
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentdeploy.templates.gpu_node import GpuNodeSpec, node_files, render_user_data

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:agentdeploy/dev/router/vllm-api-key-AbCdEf"
REPO = Path(__file__).resolve().parents[2]
HF_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:agentdeploy/dev/hugging-face-token-XyZ"
needs = lambda tool: pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} not installed (Debian package)")  # noqa: E731


WHEEL = {"node_wheel_bucket": "agentdeploy-dev-artifacts-0a1b2c3", "node_wheel_sha256": "ab" * 32,
         "node_wheel_key": f"node/{'ab' * 32}/agentdeploy-0.1.0-py3-none-any.whl"}
IMAGE = "vllm/vllm-openai:v0.31.0@sha256:" + "c1" * 32


def _spec(fleet, **kw) -> GpuNodeSpec:
    refs = kw.pop("refs", {"VLLM_API_KEY": ARN, "HF_TOKEN": HF_ARN})
    kw = {**WHEEL, "asg_name": "agentdeploy-dev-router", "ready_hook": "ready", "engine_image": IMAGE,
          "log_group": "/agentdeploy/dev/router/nodes", **kw}
    return GpuNodeSpec(stack="dev", agent="router", region="us-east-1", fleet=fleet, secret_refs=refs, **kw)


def _files(fleet, **kw) -> dict[str, str]:
    return {f["path"]: f["content"] for f in node_files(_spec(fleet, **kw))}


def _cloud_init_schema(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    return subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60)


@needs("cloud-init")
@pytest.mark.parametrize("refs", [{"VLLM_API_KEY": ARN}, {"VLLM_API_KEY": ARN, "HF_TOKEN": HF_ARN}])
def test_user_data_passes_cloud_init_schema(tmp_path, fleet, refs):
    text = render_user_data(_spec(fleet, refs=refs))
    result = _cloud_init_schema(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid" in result.stdout


@needs("cloud-init")
def test_schema_check_is_not_vacuous(tmp_path, fleet):
    broken = render_user_data(_spec(fleet)).replace("runcmd:", "runcmd: 17\nbogus_runcmd:")
    assert _cloud_init_schema(tmp_path, broken).returncode != 0


def test_user_data_fits_ec2_limit_and_is_cloud_config(fleet):
    from agentdeploy.templates.gpu_node import decode_user_data, encode_user_data

    text = render_user_data(_spec(fleet))
    assert text.startswith("#cloud-config\n")
    encoded = encode_user_data(text)
    raw = base64.b64decode(encoded)
    assert raw[:2] == b"\x1f\x8b"  # gzip: cloud-init decompresses it before parsing
    assert len(raw) < 16 * 1024 // 2  # EC2's limit (16 KB before base64), with room to grow
    assert decode_user_data(encoded) == text
    assert encode_user_data(text) == encoded  # same text, same bytes: no spurious rollout
    doc = yaml.safe_load(text)
    assert [c[-1] for c in doc["runcmd"] if c[0] == "systemctl" and c[1] == "enable"] == [
        "agentdeploy-secrets.service", "vllm.service", "agentdeploy-node-agent.service", "agentdeploy-ready.service"]


@needs("shellcheck")
@pytest.mark.parametrize("script", ["/opt/agentdeploy/bin/install.sh", "/opt/agentdeploy/bin/fetch-secrets.sh",
                                    "/opt/agentdeploy/bin/ready.sh", "/opt/agentdeploy/bin/logs.sh"])
def test_scripts_pass_shellcheck(tmp_path, fleet, script):
    path = tmp_path / Path(script).name
    path.write_text(_files(fleet, node_wheel_key="node/x/a b.whl")[script])
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@needs("shellcheck")
def test_shellcheck_is_not_vacuous(tmp_path):
    path = tmp_path / "bad.sh"
    path.write_text("#!/bin/bash\nrm -rf $DIR/*\n")
    assert subprocess.run(["shellcheck", str(path)], capture_output=True, timeout=60).returncode != 0


def _systemd_root(tmp_path: Path, units: dict[str, str]) -> Path:
    """A root with the host's system units, our units and stub executables for Exec lines."""
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    # The AMI's Docker (docker-ce ships docker.service); vllm.service requires it.
    if not (root / "usr/lib/systemd/system/docker.service").exists():
        units = {**units, "/usr/lib/systemd/system/docker.service":
                 "[Unit]\nDescription=stand-in for the AMI's Docker\n\n[Service]\nExecStart=/usr/bin/dockerd\n"}
    for path, content in units.items():
        (root / path.lstrip("/")).write_text(content)
        for line in content.splitlines():
            if line.startswith("ExecStart="):
                exe = root / shlex.split(line.split("=", 1)[1])[0].lstrip("/")
                exe.parent.mkdir(parents=True, exist_ok=True)
                exe.write_text("#!/bin/sh\n")
                exe.chmod(0o755)
    return root


@needs("systemd-analyze")
@pytest.mark.skipif(not Path("/lib/systemd/system/sysinit.target").exists(), reason="no systemd unit tree on this host")
def test_units_pass_systemd_analyze(tmp_path, fleet):
    units = {p: c for p, c in _files(fleet).items() if p.endswith(".service")}
    assert len(units) == 4
    root = _systemd_root(tmp_path, units)
    names = [Path(p).name for p in units]
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", *names],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if any(n in line for n in names)], result.stderr


@needs("systemd-analyze")
@pytest.mark.skipif(not Path("/lib/systemd/system/sysinit.target").exists(), reason="no systemd unit tree on this host")
def test_systemd_analyze_is_not_vacuous(tmp_path, fleet):
    units = {p: c.replace("RestartSec=", "RestartSek=") for p, c in _files(fleet).items() if p.endswith("vllm.service")}
    root = _systemd_root(tmp_path, units)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "vllm.service"],
                            capture_output=True, text=True, timeout=60)
    assert "Unknown key" in result.stderr


def _exec_start(unit: str) -> list[str]:
    return shlex.split(next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1])


def test_vllm_runs_the_pinned_engine_image_with_the_launchers_arguments(fleet):
    from agentdeploy.templates.vllm_args import vllm_serve_args

    unit = _files(fleet)["/etc/systemd/system/vllm.service"]
    argv = _exec_start(unit)
    assert argv[:2] == ["/usr/bin/docker", "run"]
    image_at = argv.index(IMAGE)
    # the image's entrypoint is `vllm serve`: everything after the image is vLLM's arguments
    assert argv[image_at + 1:] == vllm_serve_args(fleet, host="0.0.0.0", port=8000)
    docker = argv[2:image_at]
    assert docker[docker.index("--gpus") + 1] == "all"
    assert docker[docker.index("--ipc") + 1] == "host"  # vLLM's Docker guide: --ipc=host or a sized --shm-size
    assert docker[docker.index("--network") + 1] == "host"
    assert docker[docker.index("--volume") + 1] == "/opt/agentdeploy/hf:/root/.cache/huggingface"
    assert docker[docker.index("--env-file") + 1] == "/run/agentdeploy/secrets.env"  # VLLM_API_KEY arrives here at boot
    assert "EnvironmentFile=/run/agentdeploy/secrets.env" not in unit  # the docker client never holds the key
    assert "Requires=docker.service agentdeploy-secrets.service" in unit


@pytest.mark.parametrize("image", ["vllm/vllm-openai:v0.31.0", "vllm/vllm-openai:latest", "vllm/vllm-openai",
                                   "vllm/vllm-openai@sha256:abc", ""])
def test_render_refuses_an_engine_image_not_pinned_by_digest(fleet, image):
    from agentdeploy.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        render_user_data(_spec(fleet, engine_image=image))
    assert "dev/router" in refused.value.message
    assert "digest" in refused.value.message or "no engine image" in refused.value.message


def test_node_agent_health_port_and_identity(fleet):
    files = _files(fleet)
    env = dict(line.split("=", 1) for line in files["/etc/agentdeploy/node.env"].splitlines() if line and not line.startswith("#"))
    assert env["AGENTDEPLOY_STACK"] == "dev"
    assert env["AGENTDEPLOY_AGENT"] == "router"
    assert env["AGENTDEPLOY_HEALTH_PORT"] == "8081"
    assert env["AGENTDEPLOY_VLLM_PORT"] == "8000"
    unit = files["/etc/systemd/system/agentdeploy-node-agent.service"]
    assert "-m agentdeploy.serving.node" in unit


def test_secrets_listed_by_arn_only(fleet):
    listing = _files(fleet)["/etc/agentdeploy/secrets.list"]
    entries = dict(line.split("=", 1) for line in listing.splitlines() if line and not line.startswith("#"))
    assert entries == {"VLLM_API_KEY": ARN, "HF_TOKEN": HF_ARN}


def test_node_agent_comes_from_the_stacks_wheel_checked_by_hash(fleet):
    """Never `pip install agentdeploy` from an index (the name is not ours there): the wheel
    the stack stored, refused unless its SHA-256 matches, installed from its local path."""
    install = _files(fleet)["/opt/agentdeploy/bin/install.sh"]
    assert WHEEL["node_wheel_bucket"] in install
    assert WHEEL["node_wheel_key"] in install
    assert f'echo "{WHEEL["node_wheel_sha256"]}  $WHEEL" | sha256sum --check --strict -' in install
    assert '"$VENV/bin/pip" install --quiet --no-deps --no-index "$WHEEL"' in install


def test_nothing_is_installed_by_a_bare_name(fleet):
    """Every pip install is hash-checked or a local file; every image is pinned by digest."""
    from tests.support.node_software import bare_name_installs

    files = _files(fleet)
    assert bare_name_installs("\n".join(files.values())) == []
    install = files["/opt/agentdeploy/bin/install.sh"]
    assert '"$VENV/bin/pip" install --quiet --require-hashes --no-deps --only-binary=:all: -r "$LOCK"' in install
    assert f"ENGINE_IMAGE={shlex.quote(IMAGE)}" in install
    assert 'docker pull --quiet "$ENGINE_IMAGE"' in install


def test_node_requirements_lock_pins_every_dependency_by_hash(fleet):
    """The lock install.sh reads: one version and its wheel's SHA-256 a line, and exactly the
    node agent's dependencies at the versions the tests run with (the lock script's --check)."""
    import re

    lock = _files(fleet)["/etc/agentdeploy/node-requirements.txt"]
    lines = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert lines
    for line in lines:
        assert re.fullmatch(r"[a-z0-9-]+==[A-Za-z0-9.]+ --hash=sha256:[0-9a-f]{64}", line), line
    names = {line.split("==")[0] for line in lines}
    assert {"boto3", "aiohttp", "pydantic"} <= names
    assert "agentdeploy" not in names  # ours comes from the bucket
    check = subprocess.run([sys.executable, str(REPO / "scripts/lock-node-requirements.py"), "--check"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def test_ready_unit_completes_the_launching_hook(fleet):
    files = _files(fleet)
    ready = files["/opt/agentdeploy/bin/ready.sh"]
    assert "http://127.0.0.1:8081/healthz" in ready
    assert "complete_lifecycle_action" in ready
    env = files["/etc/agentdeploy/node.env"]
    assert "AGENTDEPLOY_READY_HOOK=ready" in env
    assert "AGENTDEPLOY_ASG_NAME=agentdeploy-dev-router" in env


def test_node_logs_are_shipped_from_every_unit(fleet):
    import json

    files = _files(fleet)
    config = json.loads(files["/etc/agentdeploy/cloudwatch-agent.json"])
    collected = {c["file_path"]: c for c in config["logs"]["logs_collected"]["files"]["collect_list"]}
    assert set(collected) == {"/var/log/cloud-init-output.log", "/var/log/agentdeploy/vllm.log",
                              "/var/log/agentdeploy/node-agent.log", "/var/log/agentdeploy/ready.log",
                              "/var/log/agentdeploy/secrets.log"}
    assert {c["log_group_name"] for c in collected.values()} == {"/agentdeploy/dev/router/nodes"}
    for unit in ("vllm", "agentdeploy-node-agent", "agentdeploy-ready", "agentdeploy-secrets"):
        text = files[f"/etc/systemd/system/{unit}.service"]
        target = next(line.split(":", 1)[1] for line in text.splitlines() if line.startswith("StandardOutput=append:"))
        assert target in collected, unit
    logs = files["/opt/agentdeploy/bin/logs.sh"]
    assert "937616F3450B7D806CBD9725D58167303B789C72" in logs
    assert "gpg --batch --verify" in logs
    doc = yaml.safe_load(render_user_data(_spec(fleet)))
    assert doc["runcmd"][-1] == ["/opt/agentdeploy/bin/logs.sh"]  # last: never in the way of serving
    assert "/opt/agentdeploy/bin/logs.sh" not in str(yaml.safe_load(render_user_data(_spec(fleet, log_group=""))))


def test_secrets_reach_only_vllm(fleet):
    """The HF token and the vLLM key only where needed: vLLM's environment, not the node agent's."""
    files = _files(fleet)
    assert "--env-file /run/agentdeploy/secrets.env" in files["/etc/systemd/system/vllm.service"]
    for unit in ("agentdeploy-node-agent", "agentdeploy-ready", "vllm"):
        assert "EnvironmentFile=/run/agentdeploy/secrets.env" not in files[f"/etc/systemd/system/{unit}.service"], unit
