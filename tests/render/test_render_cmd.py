"""`deploy render`: the artefacts a plan turns into, secrets only by reference."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.serving.auth import hash_key
from agentdeploy.serving.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CANARY = "sk-canary-7f3a9c1e-never-written"


def _with_gateway(tmp_path: Path) -> Path:
    """The service business with `stack.gateway: true` (its plan has no gateway otherwise)."""
    doc = yaml.safe_load((EXAMPLES / "service-business.yaml").read_text())
    doc["stack"]["gateway"] = True
    path = tmp_path / "business-with-gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_render_writes_loadable_gateway_config_and_agent_files(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTDEPLOY_KEY_INTAKE", CANARY)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(_with_gateway(tmp_path)), "--out", str(out), "--json"])
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


def test_render_of_a_gateway_less_plan_writes_client_configs_and_says_why_no_gateway(tmp_path):
    """The service business as written: the planner leaves out the gateway, so render writes each
    agent's client config and the plan, no gateway.yaml, and prints the plan's reasons."""
    from agentdeploy.planner import build_plan, load_decision_file

    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"))
    assert plan.infrastructure is not None and not plan.infrastructure.gateway.deploy
    out = tmp_path / "out"
    out.mkdir()
    (out / "gateway.yaml").write_text("stack: from-an-earlier-render\n")  # what a reader could still serve
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES / "service-business.yaml"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["gateway"] is False and doc["removed"] == ["gateway.yaml"]
    assert set(doc["files"]) == {"plan.json", "agents/intake.json", "agents/sales-brief.json", "agents/marketing-drafts.json"}
    assert doc["why_no_gateway"] == plan.infrastructure.gateway.why
    assert not (out / "gateway.yaml").exists()
    for agent in plan.agents:
        client = json.loads((out / f"agents/{agent.name}.json").read_text())
        assert (client["model"], client["max_tokens"], client["cache"]["ttl"]) == (agent.model, agent.max_tokens, agent.cache.ttl)
    text = CliRunner().invoke(cli, ["render", str(EXAMPLES / "service-business.yaml"), "--out", str(out)])
    assert text.exit_code == 0, text.output
    assert "no gateway.yaml: the plan leaves this stack without a gateway" in text.output
    assert "no run-time budget enforcement" in text.output and "stack.gateway: true" in text.output
    assert "deploy serve" not in text.output


def test_render_refuses_gateway_options_for_a_gateway_less_plan(tmp_path):
    result = CliRunner().invoke(cli, ["render", str(EXAMPLES / "service-business.yaml"), "--out", str(tmp_path),
                                      "--redis-url-env", "REDIS_URL"])
    assert result.exit_code == 2
    assert "--redis-url-env configures the gateway, which the plan leaves out" in result.output
    assert "stack.gateway: true" in result.output
    assert not list(tmp_path.iterdir())  # nothing written


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
