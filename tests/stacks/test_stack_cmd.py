"""`deploy preview/up/down/refresh/outputs` against a stand-in `pulumi` on PATH that records
its argv: the project's own command construction, exit codes and messages."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_pulumi.py")
DEPLOY = [sys.executable, "-c", "from agentdeploy.cli.main import main; main()"]


@pytest.fixture
def env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "pulumi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
    e.update({
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_PULUMI_DIR": str(tmp_path / "fake"),
        "AGENTDEPLOY_HOME": str(tmp_path / "home"),
        "AGENTDEPLOY_PROJECT": str(ROOT),
        "PULUMI_CONFIG_PASSPHRASE": "test-passphrase",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "",
    })
    e.pop("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK")
    return e


def deploy(env, *args, timeout=60):
    return subprocess.run([*DEPLOY, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd="/")


def calls(env) -> list[dict]:
    """Recorded invocations, argv without the global --non-interactive (checked separately)."""
    log = Path(env["FAKE_PULUMI_DIR"]) / "log.jsonl"
    out = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for c in out:
        c["raw"] = c["argv"]
        c["argv"] = [a for a in c["argv"] if a != "--non-interactive"]
    return out


def argvs(env, first: str) -> list[list[str]]:
    return [c["argv"] for c in calls(env) if c["argv"][:1] == [first]]


def existing(env, *names):
    d = Path(env["FAKE_PULUMI_DIR"])
    d.mkdir(parents=True, exist_ok=True)
    (d / "stacks.txt").write_text("".join(n + "\n" for n in names))


def fail(env, spec):
    d = Path(env["FAKE_PULUMI_DIR"])
    d.mkdir(parents=True, exist_ok=True)
    (d / "fail.txt").write_text(spec)


def no_traceback(result):
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def test_preview_runs_the_project_program_with_the_stacks_config_file(env):
    result = deploy(env, "preview", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    assert "2 to create (1 unchanged)" in result.stdout
    init = [c["argv"] for c in calls(env) if c["argv"][:2] == ["stack", "init"]]
    assert init == [["stack", "init", "dev", "--secrets-provider", "passphrase"]]
    (argv,) = argvs(env, "preview")
    assert argv[argv.index("--config-file") + 1] == str(ROOT / "stacks" / "Pulumi.dev.yaml")
    assert argv[argv.index("--stack") + 1] == "dev"
    assert argv[argv.index("--exec-kind") + 1] == "auto.local"  # Pulumi.yaml's program, not an inline one
    assert "--event-log" in argv
    assert all("--non-interactive" in c["raw"] for c in calls(env) if c["raw"] != ["version"])
    preview_call = next(c for c in calls(env) if c["argv"][:1] == ["preview"])
    assert preview_call["cwd"] == str(ROOT)
    assert preview_call["env"]["PULUMI_BACKEND_URL"] == f"file://{env['AGENTDEPLOY_HOME']}/state"
    assert Path(env["AGENTDEPLOY_HOME"], "state").is_dir()


def test_preview_json_reports_changes(env):
    result = deploy(env, "preview", "--stack", "dev", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["stack"] == "dev"
    assert doc["operation"] == "preview"
    assert doc["result"] == "succeeded"
    assert doc["changes"] == {"create": 2, "same": 1}


def test_backend_url_from_environment_wins(env):
    env["PULUMI_BACKEND_URL"] = "s3://team-state-bucket/agentdeploy"
    assert deploy(env, "preview", "--stack", "dev").returncode == 0
    assert {c["env"]["PULUMI_BACKEND_URL"] for c in calls(env) if c["argv"][0] != "version"} == {
        "s3://team-state-bucket/agentdeploy"}


def test_up_yes_json_applies_without_preview_and_prints_outputs(env):
    existing(env, "dev")
    result = deploy(env, "up", "--stack", "dev", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["changes"] == {"create": 2, "same": 1}
    assert doc["outputs"]["gatewayUrl"].startswith("http://gateway-123")
    assert argvs(env, "preview") == []
    (argv,) = argvs(env, "up")
    assert argv[:3] == ["up", "--yes", "--skip-preview"]
    assert argv[argv.index("--config-file") + 1].endswith("stacks/Pulumi.dev.yaml")
    assert not [c for c in calls(env) if c["argv"][:2] == ["stack", "init"]]


def test_up_shows_progress_from_engine_events(env):
    existing(env, "dev")
    result = deploy(env, "up", "--stack", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    assert "2/2" in result.stderr  # both announced steps finished
    assert "gateway: http://gateway-123" in result.stdout
    assert "ticket-router" in result.stdout


def test_up_without_yes_when_not_interactive_refuses(env):
    result = deploy(env, "up", "--stack", "dev")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert argvs(env, "up") == []
    no_traceback(result)


def test_down_needs_confirmation(env):
    existing(env, "dev")
    result = deploy(env, "down", "--stack", "dev")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert argvs(env, "destroy") == []
    result = deploy(env, "down", "--stack", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    (argv,) = argvs(env, "destroy")
    assert "--skip-preview" in argv
    assert "--yes" in argv
    assert "--config-file" in argv


def test_down_of_a_stack_never_deployed_says_so(env):
    result = deploy(env, "down", "--stack", "dev", "--yes")
    assert result.returncode == 2
    assert "has no state" in result.stderr
    assert "deploy up --stack dev" in result.stderr
    assert not [c for c in calls(env) if c["argv"][:2] == ["stack", "init"]]  # never creates on down
    no_traceback(result)


def test_refresh_yes(env):
    existing(env, "dev")
    result = deploy(env, "refresh", "--stack", "dev", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    (argv,) = argvs(env, "refresh")
    assert "--skip-preview" in argv
    assert "--config-file" in argv


def test_outputs(env):
    existing(env, "dev")
    result = deploy(env, "outputs", "--stack", "dev", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["agentEndpoints"]["intake"] == "ssm:/agentdeploy/dev/intake/config"
    text = deploy(env, "outputs", "--stack", "dev")
    assert "gateway: http://gateway-123.us-east-1.elb.amazonaws.com" in text.stdout


def test_failed_up_that_changed_nothing_exits_1(env):
    existing(env, "dev")
    fail(env, "up")
    result = deploy(env, "up", "--stack", "dev", "--yes")
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr
    assert "UnauthorizedOperation" in result.stderr
    no_traceback(result)


def test_failed_up_after_some_changes_exits_5_naming_them(env):
    existing(env, "dev")
    fail(env, "up partial")
    result = deploy(env, "up", "--stack", "dev", "--yes", "--json")
    assert result.returncode == 5
    err = json.loads(result.stdout)
    assert err["exit_code"] == 5
    assert "1 create" in err["message"]
    assert "fleet-router-asg" in err["message"]
    no_traceback(result)


def test_missing_pulumi_cli(env):
    env["PATH"] = "/usr/bin:/bin"
    result = deploy(env, "preview", "--stack", "dev")
    assert result.returncode == 4
    assert "Pulumi CLI" in result.stderr
    assert "get.pulumi.com" in result.stderr
    no_traceback(result)


def test_missing_aws_credentials(env):
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    result = deploy(env, "up", "--stack", "dev", "--yes")
    assert result.returncode == 4
    assert "AWS credentials" in result.stderr
    assert "AWS_PROFILE" in result.stderr
    assert calls(env) == []
    no_traceback(result)


def test_missing_passphrase(env):
    del env["PULUMI_CONFIG_PASSPHRASE"]
    result = deploy(env, "preview", "--stack", "dev")
    assert result.returncode == 4
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr
    no_traceback(result)


def test_unknown_stack(env):
    result = deploy(env, "preview", "--stack", "staging")
    assert result.returncode == 2
    assert "stack 'staging' does not exist" in result.stderr
    assert "dev, prod" in result.stderr
    no_traceback(result)


def test_preview_and_up_refuse_a_stale_plan_file_before_pulumi_runs(env, tmp_path):
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: agentdeploy\nruntime: python\nstackConfigDir: stacks\n")
    decision = project / "shop.yaml"
    decision.write_text((ROOT / "examples" / "service-business.yaml").read_text())
    (project / "stacks" / "Pulumi.shop.yaml").write_text("config:\n  agentdeploy:decisionFile: shop.yaml\n")
    env = {**env, "AGENTDEPLOY_PROJECT": str(project)}
    assert deploy(env, "plan", str(decision), "--write").returncode == 0
    decision.write_text(decision.read_text() + "\n# edited after review\n")
    for command in (["preview"], ["up", "--yes"]):
        result = deploy(env, *command, "--stack", "shop")
        assert result.returncode == 2, result.stderr
        assert f"error: decision file {decision} changed since the plan was written" in result.stderr
        no_traceback(result)
    assert calls(env) == []  # refused before the engine started


def test_preview_checks_aws_limits_first(env):
    """`deploy preview` runs the program under the mock runtime and AWS's limits before Pulumi.
    The dev stack's plan has no gateway, so its plain-HTTP opt-out serves nothing and is not
    warned about (with a gateway it is: tests/stacks/test_aws_limits.py's preflight test)."""
    result = deploy(env, "preview", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    assert "gatewayPlainHttp" not in result.stderr
    # prod serves gated Llama weights and the committed config has no Hugging Face token:
    # the preview fails before Pulumi runs, naming the model and the fix
    prod = deploy(env, "preview", "--stack", "prod", timeout=300)
    no_traceback(prod)
    assert prod.returncode == 2, prod.stderr
    assert "meta-llama/Llama-3.2-3B-Instruct" in prod.stderr
    assert "agentdeploy:huggingFaceToken" in prod.stderr
    assert "gatewayPlainHttp" not in prod.stderr
    assert not [a for a in argvs(env, "preview") if "stacks/Pulumi.prod.yaml" in " ".join(a)]  # Pulumi never ran
