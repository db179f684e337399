"""A GPU node's boot, run on this machine as far as it allows (issue 10, items 2 and 9).

The node's user data is rendered exactly as the stack renders it, written under a scratch
root, and its pieces run in the order cloud-init and systemd run them:

1. install.sh: a virtualenv; the node agent's dependencies from the hash-pinned lock
   (`pip install --require-hashes --no-deps`); the node agent's wheel downloaded from the
   stack's bucket (moto's S3, holding the wheel built from this checkout), refused unless its
   SHA-256 matches, then installed from that file; the engine image pulled by digest. Nothing
   comes from a package index (pip runs with PIP_NO_INDEX=1);
2. fetch-secrets.sh: the vLLM key read by ARN from Secrets Manager (moto) into secrets.env;
3. vllm.service's ExecStartPre and ExecStart, `docker rm` and `docker run <image> <vLLM args>`,
   with `docker` a shim (tests/boot/docker_shim.py) that checks the arguments (image pinned by
   digest and the catalog's, all GPUs, host network and IPC, secrets by --env-file and none in
   argv) and runs the same vLLM arguments with the CPU vLLM;
4. agentdeploy-node-agent.service's command line, from the venv install.sh made;
5. agentdeploy-ready.service's script: waits for the node agent's /healthz, reads its group from the
   instance tags (IMDS emulator), then completes the
   launching lifecycle hook of the group (moto, with AWS's validation of the call).

What differs from a node, and why: no systemd or cloud-init runs them (the test starts each
unit's ExecStart with the unit's environment files); paths live under a scratch root; ports are
free loopback ports; no Docker and no GPU here, so the shim stands in for Docker and runs vLLM
on CPU from the project's vLLM venv (0.32.0; the pinned image is 0.31.0, whose flags the node's
argv also uses) with CPU flags appended; the venv sees the host's packages, so the lock's pins
(the versions the tests run with) are already satisfied and pip checks them without
downloading; the model is a tiny local one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml

from agentdeploy.planner.catalog import load_catalog
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.templates.gpu_node import GpuNodeSpec, encode_user_data, render_user_data
from tests.support.procs import LOOPBACK, free_port, start_process, wait_for_http
from tests.support.vllm import BASE_ARGS, READY_TIMEOUT_S, REPO_ROOT, VLLM_ENV, require_vllm_python

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

REGION = "us-east-1"
STACK, AGENT = "boot", "router"
GROUP = f"agentdeploy-{STACK}-{AGENT}"
VLLM_KEY = "boot-test-vllm-key-0123456789abcdef"
#: The engine image the stack puts on nodes: the catalog's, pinned by digest.
IMAGE = load_catalog(include_home=False).engine_image.reference
SHIM = Path(__file__).with_name("docker_shim.py")


def _fleet(model_dir: Path) -> FleetPlan:
    return FleetPlan(
        open_model="tiny", hf_repo=str(model_dir), served_model_name="tiny-llama", instance_type="g6.xlarge",
        instance_types=["g6.xlarge"], gpu="L4", on_demand_base_capacity=0, on_demand_percentage_above_base=0,
        min_replicas=0, max_replicas=1, peak_replicas=1, average_replicas=1.0, idle_minutes=15,
        active_hours_per_day=8, max_concurrency_per_replica=4, target_queue_per_replica=2.0, max_model_len=512,
        gpu_memory_utilization=0.9, shutdown_timeout_s=5, cold_start_s=300, hourly_usd_on_demand=0.8,
        hourly_usd_spot=0.3)


def _build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO_ROOT)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("agentdeploy-*.whl"))


def _aws_fleet() -> tuple[str, str, str]:
    """What the Pulumi program leaves: a group with the ready hook, one instance, a target group."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="gpu-node",
                               LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g6.xlarge"})
    tg = boto3.client("elbv2", region_name=REGION).create_target_group(
        Name="ad-boot-router", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="instance",
        HealthCheckPath="/healthz", HealthCheckPort="8081")["TargetGroups"][0]["TargetGroupArn"]
    asg = boto3.client("autoscaling", region_name=REGION)
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, LaunchTemplate={"LaunchTemplateName": "gpu-node", "Version": "$Latest"},
        MinSize=1, MaxSize=1, DesiredCapacity=1, VPCZoneIdentifier=subnet, TargetGroupARNs=[tg])
    for name, transition in (("ready", "autoscaling:EC2_INSTANCE_LAUNCHING"), ("drain", "autoscaling:EC2_INSTANCE_TERMINATING")):
        asg.put_lifecycle_hook(LifecycleHookName=name, AutoScalingGroupName=GROUP, LifecycleTransition=transition,
                               HeartbeatTimeout=900, DefaultResult="ABANDON" if name == "ready" else "CONTINUE")
    instance = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]["Instances"][0]
    return tg, instance["InstanceId"], subnet


def _write_root(user_data: str, root: Path) -> dict[str, Path]:
    doc = yaml.safe_load(user_data)
    out = {}
    for f in doc["write_files"]:
        path = root / f["path"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f["content"])
        path.chmod(int(f["permissions"], 8))
        out[f["path"]] = path
    return out


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _exec(unit: Path, key: str = "ExecStart") -> list[str]:
    line = next(x for x in unit.read_text().splitlines() if x.startswith(f"{key}="))
    return shlex.split(line.split("=", 1)[1].lstrip("-"))


def _exec_start(unit: Path) -> list[str]:
    return _exec(unit)


def _docker_on_path(tmp_path: Path) -> Path:
    """A `docker` on PATH that runs the shim (with this interpreter)."""
    bin_dir = tmp_path / "shim-bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(SHIM))} \"$@\"\n")
    docker.chmod(0o755)
    return bin_dir


def _shim_calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_node_boots_serves_and_completes_its_launching_hook(aws, imds_factory, completed_lifecycle_actions,
                                                             tiny_model_dir, tmp_path):
    vllm_python = require_vllm_python()
    # --- what the stack stores: the wheel (by hash) and the node's secret ---------------------
    wheel = _build_wheel(tmp_path / "dist")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    key = f"node/{sha}/{wheel.name}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="agentdeploy-boot-artifacts")
    s3.upload_file(str(wheel), "agentdeploy-boot-artifacts", key)
    secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=f"agentdeploy/{STACK}/{AGENT}/vllm-api-key", SecretString=VLLM_KEY)["ARN"]
    tg_arn, instance_id, _ = _aws_fleet()
    imds = imds_factory(instance_id=instance_id, autoscaling_group=GROUP)

    # --- the user data, as the stack renders it ---------------------------------------------
    spec = GpuNodeSpec(stack=STACK, agent=AGENT, region=REGION, fleet=_fleet(tiny_model_dir),
                       secret_refs={"VLLM_API_KEY": secret_arn}, engine_image=IMAGE,
                       node_wheel_bucket="agentdeploy-boot-artifacts", node_wheel_key=key, node_wheel_sha256=sha,
                       target_group_arn=tg_arn, asg_name="", lifecycle_hook="drain", ready_hook="ready")
    user_data = render_user_data(spec)
    assert len(base64.b64decode(encode_user_data(user_data))) <= 16384  # what EC2 counts
    root = tmp_path / "root"
    files = _write_root(user_data, root)
    runcmd = yaml.safe_load(user_data)["runcmd"]
    assert runcmd[0] == ["/opt/agentdeploy/bin/install.sh"]
    base, venv = root / "opt/agentdeploy", root / "opt/agentdeploy/venv"
    aws_env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    shim_log = tmp_path / "docker-calls.jsonl"
    common = {"PATH": f"{_docker_on_path(tmp_path)}:{os.environ['PATH']}", "HOME": str(tmp_path), **aws_env,
              "AGENTDEPLOY_SHIM_LOG": str(shim_log), "AGENTDEPLOY_SHIM_IMAGE": IMAGE, "AGENTDEPLOY_SHIM_ROOT": str(root)}

    # --- 1. install.sh ------------------------------------------------------------------------
    install_env = {**common, "AGENTDEPLOY_BASE": str(base), "AGENTDEPLOY_VENV": str(venv),
                   "AGENTDEPLOY_SYSTEM_PYTHON": getattr(sys, "_base_executable", sys.executable),
                   "AGENTDEPLOY_VENV_SYSTEM_SITE_PACKAGES": "1", "AGENTDEPLOY_NVME": str(root / "nvme"),
                   "AGENTDEPLOY_NODE_REQUIREMENTS": str(files["/etc/agentdeploy/node-requirements.txt"]),
                   "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                   # only the lock and the wheel: no local mirror, no constraints file of this machine
                   "PIP_CONFIG_FILE": os.devnull}
    done = subprocess.run([str(files["/opt/agentdeploy/bin/install.sh"])], env=install_env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _shim_calls(shim_log) == [["pull", "--quiet", IMAGE]]  # the engine, by digest
    where = subprocess.run([str(venv / "bin/python"), "-c", "import agentdeploy; print(agentdeploy.__file__)"],
                           capture_output=True, text=True, timeout=60, env=common, cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where  # the wheel from the bucket, not this checkout

    # --- 2. fetch-secrets.sh --------------------------------------------------------------------
    run_dir = root / "run/agentdeploy"
    done = subprocess.run([str(files["/opt/agentdeploy/bin/fetch-secrets.sh"])], capture_output=True, text=True,
                          timeout=120, env={**common, "AGENTDEPLOY_SECRETS_LIST": str(files["/etc/agentdeploy/secrets.list"]),
                                            "AGENTDEPLOY_RUN_DIR": str(run_dir), "AGENTDEPLOY_PYTHON": str(venv / "bin/python")},
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    secrets_env = _env_file(run_dir / "secrets.env")
    assert secrets_env == {"VLLM_API_KEY": VLLM_KEY}
    node_env = _env_file(files["/etc/agentdeploy/node.env"])

    # --- 3. vllm.service: docker (the shim) runs the pinned image's `vllm serve` ---------------
    unit = files["/etc/systemd/system/vllm.service"]
    pre, argv = _exec(unit, "ExecStartPre"), _exec_start(unit)
    assert pre[0] == argv[0] == "/usr/bin/docker"
    assert subprocess.run([sys.executable, str(SHIM), *pre[1:]], env=common, timeout=60).returncode == 0
    assert argv[1] == "run"
    assert argv[argv.index(IMAGE) + 1] == str(tiny_model_dir)  # `vllm serve MODEL ...` after the image
    vllm_port = free_port()
    # The unit passes no environment of its own (the secrets reach the container by --env-file),
    # so neither does the test: the shim sees only this machine's offline settings.
    shim_env = {**common, **VLLM_ENV, "VLLM_PYTHON": str(vllm_python), "AGENTDEPLOY_SHIM_HOST": LOOPBACK,
                "AGENTDEPLOY_SHIM_PORT": str(vllm_port), "AGENTDEPLOY_SHIM_EXTRA_ARGS": json.dumps(list(BASE_ARGS))}
    assert VLLM_KEY not in json.dumps(shim_env)
    vllm = start_process("vllm", [sys.executable, str(SHIM), *argv[1:]], tmp_path / "vllm.log", env=shim_env)
    # fails at once, with the log, if the shim refused the command line or vLLM died
    wait_for_http(f"http://{LOOPBACK}:{vllm_port}/health", timeout_s=READY_TIMEOUT_S, process=vllm)
    # --- 4. agentdeploy-node-agent.service -----------------------------------------------------
    argv = _exec_start(files["/etc/systemd/system/agentdeploy-node-agent.service"])
    assert argv == ["/opt/agentdeploy/venv/bin/python", "-m", "agentdeploy.serving.node"]
    health_port = free_port()
    agent = start_process("node-agent", [str(venv / "bin/python"), *argv[1:]], tmp_path / "node-agent.log",
                          env={**node_env, **aws_env, "AGENTDEPLOY_VLLM_URL": f"http://{LOOPBACK}:{vllm_port}",
                               "AGENTDEPLOY_HEALTH_HOST": LOOPBACK, "AGENTDEPLOY_HEALTH_PORT": str(health_port),
                               "AGENTDEPLOY_IMDS_URL": imds.url}, cwd=tmp_path)
    try:
        # --- 5. agentdeploy-ready.service: blocks until healthy, then completes the hook ------
        assert _exec_start(files["/etc/systemd/system/agentdeploy-ready.service"]) == ["/opt/agentdeploy/bin/ready.sh"]
        ready = subprocess.run(
            [str(files["/opt/agentdeploy/bin/ready.sh"])], capture_output=True, text=True, timeout=600,
            env={**common, **node_env, "AGENTDEPLOY_HEALTH_URL": f"http://{LOOPBACK}:{health_port}/healthz",
                 "AGENTDEPLOY_IMDS_URL": imds.url, "AGENTDEPLOY_PYTHON": str(venv / "bin/python"),
                 "AGENTDEPLOY_READY_POLL_S": "1"}, cwd=tmp_path)
        assert ready.returncode == 0, f"{ready.stdout}{ready.stderr}\nvllm:\n{vllm.log_tail()}\nagent:\n{agent.log_tail()}"
        assert completed_lifecycle_actions == [
            {"group": GROUP, "hook": "ready", "instance": instance_id, "result": "CONTINUE"}]
        wait_for_http(f"http://{LOOPBACK}:{health_port}/healthz", timeout_s=5, process=agent)

        # vLLM requires the key the node fetched by ARN, and serves with it
        body = json.dumps({"model": "tiny-llama", "prompt": "hello", "max_tokens": 4}).encode()
        url = f"http://{LOOPBACK}:{vllm_port}/v1/completions"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}),
                                   timeout=60)
        assert denied.value.code == 401
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                              "Authorization": f"Bearer {VLLM_KEY}"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["choices"]
    finally:
        agent.stop(grace_s=3.0)
        vllm.stop(grace_s=5.0)


def test_install_refuses_a_wheel_whose_hash_differs(aws, tmp_path):
    """The bucket's object replaced (or the user data edited): install.sh stops before pip."""
    wheel = tmp_path / "agentdeploy-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not the wheel the stack built")
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="agentdeploy-boot-artifacts")
    key = f"node/{'0' * 64}/{wheel.name}"
    s3.upload_file(str(wheel), "agentdeploy-boot-artifacts", key)
    spec = GpuNodeSpec(stack=STACK, agent=AGENT, region=REGION, fleet=_fleet(tmp_path), engine_image=IMAGE,
                       node_wheel_bucket="agentdeploy-boot-artifacts", node_wheel_key=key, node_wheel_sha256="0" * 64)
    files = _write_root(render_user_data(spec), tmp_path / "root")
    base = tmp_path / "root/opt/agentdeploy"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
           "AGENTDEPLOY_BASE": str(base), "AGENTDEPLOY_VENV": str(base / "venv"),
           "AGENTDEPLOY_SYSTEM_PYTHON": getattr(sys, "_base_executable", sys.executable),
           "AGENTDEPLOY_VENV_SYSTEM_SITE_PACKAGES": "1", "AGENTDEPLOY_NVME": str(tmp_path / "nvme"), "PIP_NO_INDEX": "1",
           "AGENTDEPLOY_NODE_REQUIREMENTS": str(files["/etc/agentdeploy/node-requirements.txt"]), "PIP_CONFIG_FILE": os.devnull}
    done = subprocess.run([str(files["/opt/agentdeploy/bin/install.sh"])], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr
    assert not (base / ".installed").exists()
    listed = subprocess.run([str(base / "venv/bin/python"), "-m", "pip", "list", "--path",
                             str(next((base / "venv/lib").glob("python3*/site-packages")))],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert listed.returncode == 0
    assert "agentdeploy" not in listed.stdout
