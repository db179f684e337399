"""The GitOps workflow: valid YAML with the three triggers, the commands it promises, and
shell steps that pass shellcheck."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / "templates" / "gitops" / "agentdeploy.yml"


@pytest.fixture(scope="module")
def wf():
    return yaml.safe_load(WORKFLOW.read_text())


def _runs(job) -> str:
    return "\n".join(s.get("run", "") for s in job["steps"])


def test_triggers(wf):
    on = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(on) >= {"pull_request", "push", "schedule"}
    assert on["push"]["branches"] == ["main"] and on["schedule"][0]["cron"]


def test_preview_comments_the_cost_table(wf):
    job = wf["jobs"]["preview"]
    assert job["if"] == "github.event_name == 'pull_request'"
    runs = _runs(job)
    assert "deploy plan" in runs and "--markdown" in runs and "deploy preview --stack" in runs
    assert "gh pr comment" in runs and wf["permissions"]["pull-requests"] == "write"


def test_apply_on_merge_and_reap_on_schedule(wf):
    assert "deploy up --stack \"$STACK\" --yes --json" in _runs(wf["jobs"]["apply"])
    assert wf["jobs"]["apply"]["if"] == "github.event_name == 'push'"
    assert "deploy reap --stack" in _runs(wf["jobs"]["reap"])
    assert "schedule" in wf["jobs"]["reap"]["if"]


def test_no_pulumi_cloud_and_no_inline_secrets(wf):
    text = WORKFLOW.read_text()
    assert "PULUMI_ACCESS_TOKEN" not in text
    assert wf["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (Debian package)")
def test_run_steps_pass_shellcheck(wf, tmp_path):
    scripts = [s["run"] for job in wf["jobs"].values() for s in job["steps"] if "run" in s]
    assert len(scripts) >= 6
    for i, script in enumerate(scripts):
        body = re.sub(r"\$\{\{[^}]*\}\}", "GHA_EXPR", script)  # Actions expressions are substituted before bash runs
        path = tmp_path / f"step{i}.sh"
        path.write_text("#!/bin/bash\n" + body)
        result = subprocess.run(["shellcheck", "--severity=warning", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"step {i}:\n{script}\n{result.stdout}"
