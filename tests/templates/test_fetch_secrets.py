"""The node's boot-time secret fetch, run for real against moto's Secrets Manager on loopback:
values arrive only in a root-only file systemd loads, never anywhere else."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import boto3
import pytest

from agentdeploy.templates.gpu_node import node_files
from tests.support.moto import aws, moto_server  # noqa: F401  (fixtures)
from tests.templates.test_gpu_node import _spec

pytestmark = pytest.mark.integration


def _script(tmp_path, fleet, refs):
    files = {f["path"]: f["content"] for f in node_files(_spec(fleet, refs=refs))}
    script = tmp_path / "fetch-secrets.sh"
    script.write_text(files["/opt/agentdeploy/bin/fetch-secrets.sh"])
    script.chmod(0o755)
    listing = tmp_path / "secrets.list"
    listing.write_text(files["/etc/agentdeploy/secrets.list"])
    env = {**os.environ, "AGENTDEPLOY_SECRETS_LIST": str(listing), "AGENTDEPLOY_RUN_DIR": str(tmp_path / "run"),
           "AGENTDEPLOY_PYTHON": sys.executable}
    return script, env


def test_fetches_each_secret_by_arn_into_a_root_only_file(aws, tmp_path, fleet):  # noqa: F811
    sm = boto3.client("secretsmanager")
    key = sm.create_secret(Name="agentdeploy/dev/router/vllm-api-key", SecretString="vllm-key-Zx81")["ARN"]
    hf = sm.create_secret(Name="agentdeploy/dev/hugging-face-token", SecretString="hf_tokenValue42")["ARN"]
    script, env = _script(tmp_path, fleet, {"VLLM_API_KEY": key, "HF_TOKEN": hf})
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run" / "secrets.env"
    assert out.read_text() == "VLLM_API_KEY=vllm-key-Zx81\nHF_TOKEN=hf_tokenValue42\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "vllm-key-Zx81" not in result.stdout + result.stderr


def test_a_missing_secret_fails_the_unit_and_leaves_no_partial_file(aws, tmp_path, fleet):  # noqa: F811
    sm = boto3.client("secretsmanager")
    key = sm.create_secret(Name="agentdeploy/dev/router/vllm-api-key", SecretString="vllm-key-Zx81")["ARN"]
    missing = key.replace("vllm-api-key", "nope")
    script, env = _script(tmp_path, fleet, {"VLLM_API_KEY": key, "HF_TOKEN": missing})
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert not (tmp_path / "run" / "secrets.env").exists()
    assert not (tmp_path / "run" / "secrets.env.tmp").exists()
