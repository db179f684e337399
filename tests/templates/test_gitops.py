"""The GitOps workflow: valid YAML with the three triggers, the commands it promises, shell
steps that pass shellcheck, and failures that fail the run (its steps run here under the shell
GitHub would use, with a stand-in `deploy`)."""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "templates" / "gitops" / "agentdeploy.yml"
#: How GitHub runs a `run:` step on Linux for each `shell:` value (None: no shell given anywhere).
GITHUB_SHELLS = {None: "bash -e {0}", "bash": "bash --noprofile --norc -eo pipefail {0}", "sh": "sh -e {0}"}
#: Stands in for the CLI: plan prints a table, check/up/reap/spend fail with $FAIL_RC for stack $FAIL_STACK;
#: every call is logged to $DEPLOY_LOG.
FAKE_DEPLOY = """#!/bin/bash
echo "$*" >> "${DEPLOY_LOG:-/dev/null}"
case "$1" in
  plan) echo "| agent | route |"; exit 0 ;;
  check) [ "$3" = "${FAIL_STACK:-}" ] && { echo "failed: $3" >&2; exit "${FAIL_RC:-5}"; }
         echo '{"resources": 62, "violations": [], "warnings": ["plain http"]}' ;;
  preview|up|reap) [ "$3" = "${FAIL_STACK:-}" ] && { echo "failed: $3" >&2; exit "${FAIL_RC:-5}"; }
              echo '{"changes": {"create": 3, "same": 1}}' ;;
  spend) [ "$4" = "${FAIL_STACK:-}" ] && { echo "failed: $4" >&2; exit "${FAIL_RC:-5}"; }
         echo '{"published": 6}' ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture(scope="module")
def wf():
    return yaml.safe_load(WORKFLOW.read_text())


def _runs(job) -> str:
    return "\n".join(s.get("run", "") for s in job["steps"])


def _step(job: dict, name: str) -> dict:
    return next(s for s in job["steps"] if s.get("name") == name)


def _shell(wf: dict, job: dict, step: dict) -> str:
    """The command line GitHub runs the step with: step, then job, then workflow defaults."""
    shell = (step.get("shell") or job.get("defaults", {}).get("run", {}).get("shell")
             or wf.get("defaults", {}).get("run", {}).get("shell"))
    return GITHUB_SHELLS.get(shell, shell)


def _run_step(wf: dict, job: dict, step: dict, cwd: Path, outputs: dict | None = None,
              **env: str) -> tuple[int, dict[str, str]]:
    """Run one step as the runner would; returns its exit status and what it wrote to $GITHUB_OUTPUT.
    `${{ steps.<id>.outputs.<name> }}` in the step's env resolves from `outputs`."""
    bin_dir = cwd / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "deploy").write_text(FAKE_DEPLOY)
    (bin_dir / "deploy").chmod(0o755)
    if not (bin_dir / "python").exists():
        # A wrapper, not a symlink: a venv's interpreter finds its pyvenv.cfg beside the path it
        # was started by, so a symlink elsewhere would run the base Python without the venv.
        (bin_dir / "python").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        (bin_dir / "python").chmod(0o755)
    script, out_file = cwd / "step.sh", cwd / "github_output"
    script.write_text(step["run"])
    out_file.write_text("")
    resolve = lambda v: re.sub(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.(\w+)\s*\}\}",  # noqa: E731
                               lambda m: (outputs or {}).get(m[1], {}).get(m[2], ""), str(v))
    full_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(cwd),
                "AGENTDEPLOY_PROJECT": str(ROOT), "GITHUB_OUTPUT": str(out_file),
                "GITHUB_STEP_SUMMARY": str(cwd / "summary.md"),
                **{k: resolve(v) for k, v in {**wf.get("env", {}), **job.get("env", {}), **step.get("env", {})}.items()},
                **env}
    argv = [a.replace("{0}", str(script)) for a in _shell(wf, job, step).split()]
    result = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)
    written = dict(line.split("=", 1) for line in out_file.read_text().splitlines() if "=" in line)
    return result.returncode, written


def test_triggers(wf):
    on = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(on) >= {"pull_request", "push", "schedule"}
    assert on["push"]["branches"] == ["main"]
    assert on["schedule"][0]["cron"]


def test_preview_comments_the_cost_table(wf):
    job = wf["jobs"]["preview"]
    assert job["if"] == "github.event_name == 'pull_request'"
    runs = _runs(job)
    assert "deploy plan" in runs
    assert "--markdown" in runs
    assert "deploy check --stack" in runs
    assert "gh pr comment" in runs
    assert job["permissions"]["pull-requests"] == "write"


def test_paths_cover_everything_that_changes_the_deployment(wf):
    """Every folder the package installs (setup.py's FOLDERS, agentdeploy/), the policy pack and
    the decision files: a change to any of them changes what `deploy up` builds."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    folders = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "FOLDERS")
    needed = {f"{f}/**" for f in [*folders, "agentdeploy", "policies", "examples", "decisions"]}
    needed |= {"Pulumi.yaml", "pyproject.toml", "setup.py"}
    on = wf[True]
    for event in ("pull_request", "push"):
        assert needed <= set(on[event]["paths"]), f"{event} misses {sorted(needed - set(on[event]['paths']))}"
    assert {"templates/**", "serving/**", "planner/**", "cli/**"} <= needed  # setup.py still names them


def test_every_run_step_fails_when_any_piped_command_fails(wf):
    assert wf["defaults"]["run"]["shell"] == "bash"
    for job_name, job in wf["jobs"].items():
        for step in job["steps"]:
            if "run" in step:
                assert "pipefail" in _shell(wf, job, step), f"{job_name}: {step.get('name')}"


def test_a_failed_apply_fails_its_step(wf, tmp_path):
    job = wf["jobs"]["apply"]
    step = _step(job, "deploy up")
    assert "| tee" in step["run"]  # the pipe this guards
    rc, _ = _run_step(wf, job, step, tmp_path, STACK="prod", FAIL_STACK="prod", FAIL_RC="5")
    assert rc == 5
    rc, _ = _run_step(wf, job, step, tmp_path, STACK="dev", FAIL_STACK="prod")
    assert rc == 0
    assert '"create": 3' in (tmp_path / "up-dev.json").read_text()


def test_a_failed_preview_is_commented_then_fails_the_job(wf, tmp_path):
    job = wf["jobs"]["preview"]
    names = [s.get("name") for s in job["steps"]]
    preview, comment, fail = (_step(job, n) for n in (
        "Cost table and preview per stack", "Comment on the pull request", "Fail if a plan or check failed"))
    assert names.index(preview["name"]) < names.index(comment["name"]) < names.index(fail["name"]) == len(names) - 1
    assert "if" not in comment and "if" not in fail  # both run once the preview step has passed

    rc, out = _run_step(wf, job, preview, tmp_path, FAIL_STACK="prod", FAIL_RC="5")
    assert rc == 0, "the preview step must pass so the comment is posted"
    body = (tmp_path / "comment.md").read_text()
    assert "**Check:** 62 resources within AWS's limits" in body
    assert "**Check failed** (exit 5)" in body
    assert "- warning: plain http" in body
    assert body.count("| agent | route |") == 2
    assert (tmp_path / "summary.md").read_text() == body
    rc, _ = _run_step(wf, job, fail, tmp_path, outputs={"preview": out})
    assert rc == 5

    rc, out = _run_step(wf, job, preview, tmp_path)
    assert rc == 0
    assert "failed" not in (tmp_path / "comment.md").read_text()
    assert _run_step(wf, job, fail, tmp_path, outputs={"preview": out})[0] == 0


def test_apply_on_merge_and_reap_on_schedule(wf):
    assert "deploy up --stack \"$STACK\" --yes --json" in _runs(wf["jobs"]["apply"])
    assert wf["jobs"]["apply"]["if"] == "github.event_name == 'push'"
    assert 'deploy reap --stack "$stack"' in _runs(wf["jobs"]["reap"])
    assert "schedule" in wf["jobs"]["reap"]["if"]


def test_no_pulumi_cloud_and_no_inline_secrets(wf):
    text = WORKFLOW.read_text()
    assert "PULUMI_ACCESS_TOKEN" not in text
    assert wf["jobs"]["apply"]["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


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


# --- safe to adopt (issue 10, item 8) ----------------------------------------------------

def test_pull_requests_get_no_passphrase_and_no_aws_role(wf):
    """A pull request's code runs in the preview job: it must not decrypt stack secrets nor
    reach AWS. The passphrase lives only in the apply job (environments dev/prod)."""
    job = wf["jobs"]["preview"]
    text = yaml.safe_dump(job)
    assert "PULUMI_CONFIG_PASSPHRASE" not in text
    assert "secrets." not in text
    assert "configure-aws-credentials" not in text
    assert "id-token" not in job["permissions"]
    assert "PULUMI_CONFIG_PASSPHRASE" not in yaml.safe_dump(wf.get("env", {}))
    assert "PULUMI_CONFIG_PASSPHRASE" not in yaml.safe_dump(wf["jobs"]["reap"])
    assert wf["jobs"]["apply"]["environment"] == "${{ matrix.stack }}"


def test_permissions_are_per_job(wf):
    assert wf["permissions"] == {}
    assert wf["jobs"]["preview"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    for name in ("apply", "reap"):
        assert wf["jobs"][name]["permissions"] == {"contents": "read", "id-token": "write"}


def test_actions_pinned_by_commit_sha():
    uses = re.findall(r"uses:\s*(\S+)", WORKFLOW.read_text())
    assert len(uses) >= 8
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses


def test_checkouts_do_not_persist_credentials(wf):
    checkouts = [s for job in wf["jobs"].values() for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    assert len(checkouts) == 3
    assert all(s["with"]["persist-credentials"] is False for s in checkouts)


def test_apply_and_reap_have_separate_concurrency_groups(wf):
    apply, reap = wf["jobs"]["apply"]["concurrency"], wf["jobs"]["reap"]["concurrency"]
    assert apply["group"] != reap["group"]
    assert not apply["group"].startswith(reap["group"])
    assert apply["cancel-in-progress"] is False  # a queued apply is never cancelled
    assert "concurrency" not in wf


@pytest.mark.parametrize("backend, rc", [("", 2), ("file:///home/runner/state", 2), ("s3://team/agentdeploy", 0)])
def test_apply_refuses_a_file_backend(wf, tmp_path, backend, rc):
    job = wf["jobs"]["apply"]
    assert job["steps"][0]["name"] == "Refuse a file backend"
    got, _ = _run_step(wf, job, job["steps"][0], tmp_path, PULUMI_BACKEND_URL=backend)
    assert got == rc


def test_reap_runs_every_stack_in_its_own_region_and_exits_with_the_worst_code(wf, tmp_path):
    job = wf["jobs"]["reap"]
    step = _step(job, "deploy reap")
    log = tmp_path / "deploy.log"
    rc, _ = _run_step(wf, job, step, tmp_path, FAIL_STACK="dev", FAIL_RC="4", DEPLOY_LOG=str(log))
    assert rc == 4
    calls = log.read_text().splitlines()
    assert calls == ["reap --stack dev --region us-east-1 --json", "reap --stack prod --region us-east-1 --json"]
    log.unlink()
    assert _run_step(wf, job, step, tmp_path, DEPLOY_LOG=str(log))[0] == 0


def test_scheduled_spend_publish_runs_for_gateway_less_stacks_only(wf, tmp_path):
    """dev (the service business) is gateway-less by its plan, prod runs a fleet and its gateway:
    only dev's spend is published, in its own region, after reap whatever reap did."""
    job = wf["jobs"]["reap"]
    names = [s.get("name") for s in job["steps"]]
    assert names.index("deploy spend publish") > names.index("deploy reap")
    step = _step(job, "deploy spend publish")
    assert step["if"] == "always()"
    assert step["env"]["ANTHROPIC_ADMIN_KEY"] == "${{ secrets.ANTHROPIC_ADMIN_KEY }}"
    log = tmp_path / "deploy.log"
    rc, _ = _run_step(wf, job, step, tmp_path, DEPLOY_LOG=str(log))
    assert rc == 0
    assert log.read_text().splitlines() == ["spend publish --stack dev --region us-east-1 --json"]
    log.unlink()
    assert _run_step(wf, job, step, tmp_path, FAIL_STACK="dev", FAIL_RC="4", DEPLOY_LOG=str(log))[0] == 4
