"""`deploy serve` refuses bad input with a clear message and the documented exit code."""

import os
import subprocess
import sys

import yaml

from tests.gateway.helpers import gateway_config

MAIN = "from agentdeploy.cli.main import main; main()"


def _serve(args, env=None):
    full = {k: v for k, v in os.environ.items() if k != "TEST_ANTHROPIC_KEY"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", MAIN, "serve", *args], capture_output=True, text=True, env=full, timeout=60)


def test_missing_config_file_exits_2(tmp_path):
    r = _serve(["--config", str(tmp_path / "nope.yaml")])
    assert r.returncode == 2
    assert "cannot read gateway config" in r.stderr
    assert "Traceback" not in r.stderr


def test_invalid_config_names_the_field_and_exits_2(tmp_path):
    cfg = gateway_config("http://127.0.0.1:1")
    cfg["agents"]["api-agent"]["max_tokens_cap"] = -5
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = _serve(["--config", str(path)])
    assert r.returncode == 2
    assert "agents.api-agent.max_tokens_cap" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_upstream_key_exits_4_naming_the_variable(tmp_path):
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(gateway_config("http://127.0.0.1:1")))
    r = _serve(["--config", str(path)])
    assert r.returncode == 4
    assert "TEST_ANTHROPIC_KEY" in r.stderr
    assert "Traceback" not in r.stderr
