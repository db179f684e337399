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


def test_serve_binds_loopback_by_default_and_warns_when_block_budgets_live_in_memory(tmp_path, claude_emulator):
    import httpx

    from agentdeploy.serving.config import GatewayConfig, memory_budget_warning
    from tests.gateway.helpers import env_for
    from tests.support.procs import free_port, start_process, wait_for_http

    port = free_port()
    cfg = gateway_config(claude_emulator.base_url, api_agent={"budget": {"monthly_usd": 1.0, "policy": "block"}},
                         listen={"port": port})
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = start_process("gateway", [sys.executable, "-c", MAIN, "serve", "--config", str(path)], tmp_path / "gw.log",
                         env=env_for(claude_emulator))
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30, process=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        log = (tmp_path / "gw.log").read_text()
        assert '"host":"127.0.0.1"' in log  # no --host: loopback, never 0.0.0.0 by surprise
        assert "warning: budget store is in memory" in log
        assert "api-agent" in log
    finally:
        proc.stop(grace_s=5)
    with_redis = {**cfg, "budget_store": {"backend": "redis", "redis_url": {"env": "R"}}}
    assert memory_budget_warning(GatewayConfig.model_validate(with_redis)) is None
    alert_only = gateway_config(claude_emulator.base_url, api_agent={"budget": {"monthly_usd": 1.0, "policy": "alert"}})
    assert memory_budget_warning(GatewayConfig.model_validate(alert_only)) is None
