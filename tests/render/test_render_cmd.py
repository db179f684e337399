"""`deploy render`: the artefacts a plan turns into, secrets only by reference."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.serving.auth import hash_key
from agentdeploy.serving.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CANARY = "sk-canary-7f3a9c1e-never-written"


def test_render_writes_loadable_gateway_config_and_agent_files(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTDEPLOY_KEY_INTAKE", CANARY)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES / "service-business.yaml"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert {"gateway.yaml", "plan.json", "agents/intake.json", "agents/sales-brief.json", "agents/marketing-drafts.json"} <= set(files)
    config = load_config(out / "gateway.yaml")
    assert set(config.agents) == {"intake", "sales-brief", "marketing-drafts"}
    # the client key reaches the config only as its hash, and no file holds the value
    assert hash_key(CANARY) in (out / "gateway.yaml").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text(), path
    intake = json.loads((out / "agents/intake.json").read_text())
    assert intake["model"] == "claude-haiku-4-5"
    assert intake["anthropic_api_key_env"] == "ANTHROPIC_API_KEY"
    plan = json.loads((out / "plan.json").read_text())
    assert [a["name"] for a in plan["agents"]] == ["intake", "sales-brief", "marketing-drafts"]


def test_render_gpu_agents_get_vllm_command_and_user_data(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES / "high-volume-router.yaml"), "--out", str(out),
                                      "--vllm-replica", "ticket-router=http://127.0.0.1:8000"])
    assert result.exit_code == 0, result.output
    script = (out / "gpu/ticket-router/vllm-serve.sh").read_text()
    assert "serve meta-llama/Llama-3.2-3B-Instruct" in script
    assert "--served-model-name llama-3.2-3b" in script
    assert "--api-key" not in script  # the key comes from VLLM_API_KEY in the environment
    assert (out / "gpu/ticket-router/user-data.yaml").read_text().startswith("#cloud-config")
    config = load_config(out / "gateway.yaml")
    upstream = config.agents["ticket-router"].chain[0].upstream
    assert config.upstreams[upstream].replicas == ["http://127.0.0.1:8000"]


def test_render_rejects_replica_for_an_api_agent(tmp_path):
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES / "service-business.yaml"), "--out", str(tmp_path),
                                      "--vllm-replica", "intake=http://127.0.0.1:8000"])
    assert result.exit_code == 2
    assert "not self-hosted" in result.output
    assert not (tmp_path / "gateway.yaml").exists()  # nothing half-written


def test_gpu_agent_gateway_budget_meters_the_claude_fallback_share():
    from agentdeploy.planner import build_plan, load_catalog, load_decision_file
    from agentdeploy.templates.gateway_config import build_gateway_config

    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"))
    config = build_gateway_config(plan, load_catalog(include_home=False))
    for agent in plan.agents:
        # the gateway copies the plan's Claude-metered share (planner/budget.py splits it)
        assert config.agents[agent.name].budget.monthly_usd == agent.budget.gateway_usd
        assert config.agents[agent.name].budget.monthly_usd < agent.budget.monthly_usd
    router = plan.agent("ticket-router")
    assert router.route == "gpu"
    assert router.budget.gateway_usd < router.budget.aws_usd
    # the Claude fallback gets the plan's caching; vLLM's own prefix caching needs no breakpoints
    drafts = plan.agent("answer-drafts")
    assert drafts.cache.enabled
    assert config.agents["answer-drafts"].cache.ttl == drafts.cache.ttl


def test_render_points_the_gateway_at_replica_files_and_node_health(tmp_path):
    """--replicas-dir and --node-health-port reach each GPU agent's upstream; a bad port is exit 2."""
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES / "high-volume-router.yaml"), "--out", str(out),
                                      "--replicas-dir", "/run/agentdeploy/replicas", "--node-health-port", "8081"])
    assert result.exit_code == 0, result.output
    config = load_config(out / "gateway.yaml")
    vllm = {name: up for name, up in config.upstreams.items() if up.kind == "openai"}
    assert vllm, "the example has a self-hosted agent"
    for name, up in vllm.items():
        assert up.node_health_port == 8081
        assert up.replicas_file == f"/run/agentdeploy/replicas/{name.removeprefix('vllm-')}.replicas"
    bad = CliRunner().invoke(cli, ["render", str(EXAMPLES / "high-volume-router.yaml"), "--out", str(out), "--node-health-port", "0"])
    assert bad.exit_code == 2
    assert "--node-health-port" in bad.output
