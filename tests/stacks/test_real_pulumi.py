"""With the real Pulumi CLI (wherever `pulumi` is on PATH): a stack is created in a local file
backend with the passphrase provider, its salt lands in stacks/Pulumi.<stack>.yaml (the CLI
honours stackConfigDir), and `deploy outputs` reads it back. Needs no AWS account and no
provider plugin. Skipped, visibly, where the CLI is not installed (it cannot be installed on
the development machines of this project: no package ships the binary offline)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("pulumi") is None,
                                reason="Pulumi CLI not on PATH: install it (curl -fsSL https://get.pulumi.com | sh) to run this test")


@pytest.fixture
def project(tmp_path):
    """A copy of the project, so `stack init` writes its salt there, not into the repo."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    for f in (ROOT / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(f, root / "stacks" / f.name)
    shutil.copytree(ROOT / "examples", root / "examples")
    return root


def test_stack_lifecycle_on_a_file_backend(project, tmp_path):
    from agentdeploy.stacks.automation import open_stack, read_outputs, resolve_target

    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_CONFIG_PASSPHRASE": "real-cli-test"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        target = resolve_target("dev", project_root=project)
        stack = open_stack(target, create=True)
        assert stack.name == "dev"
        salted = yaml.safe_load((project / "stacks" / "Pulumi.dev.yaml").read_text())
        assert salted.get("encryptionsalt"), "the CLI did not write the passphrase salt into stacks/"
        assert not (project / "Pulumi.dev.yaml").exists()
        assert read_outputs(target) == {}
        result = subprocess.run([sys.executable, "-c", "from agentdeploy.cli.main import main; main()",
                                 "outputs", "--stack", "dev", "--json"],
                                env={**os.environ, "AGENTDEPLOY_PROJECT": str(project)},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"stack": "dev", "outputs": {}}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
