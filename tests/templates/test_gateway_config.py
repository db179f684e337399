"""templates/gateway_config.py: the plan mapped onto the gateway config (routes, chains, prices),
and client keys read from the environment as hashes."""

import pytest

from agentdeploy.serving.auth import hash_key
from agentdeploy.serving.config import dump_yaml, parse_config
from agentdeploy.templates.gateway_config import build_gateway_config, client_key_hashes_from_env


def test_build_from_plan_examples_maps_routes_chains_and_prices():
    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog

    catalog = load_catalog(include_home=False)
    plan = build_plan(load_decision_file("examples/service-business.yaml"), catalog)
    cfg = build_gateway_config(plan, catalog, client_key_hashes={"intake": [hash_key("k1")]})
    intake = cfg.agents["intake"]
    assert [(e.upstream, e.model) for e in intake.chain] == [("anthropic", "claude-haiku-4-5")]
    assert intake.cache.breakpoints == ["system", "conversation"]
    assert intake.cache.ttl == plan.agent("intake").cache.ttl  # copied from the plan, never re-decided
    assert intake.deadline_s == 2.0
    assert intake.max_tokens_default == plan.agent("intake").max_tokens
    assert cfg.models["claude-haiku-4-5"].cache_write_1h == pytest.approx(2e-6)
    assert cfg.upstreams["anthropic"].api_key.env == "ANTHROPIC_API_KEY"
    assert cfg.agents["intake"].key_hashes == [hash_key("k1")]

    plan = build_plan(load_decision_file("examples/high-volume-router.yaml"), catalog)
    cfg = build_gateway_config(plan, catalog, vllm_replicas={"ticket-router": ["http://10.0.0.5:8000"]}, replicas_dir="/etc/agentdeploy")
    gpu = plan.agent("ticket-router")
    chain = cfg.agents["ticket-router"].chain
    assert chain[0].upstream == "vllm-ticket-router"
    assert chain[0].model == gpu.fleet.served_model_name
    assert chain[1].model == gpu.fallback_model
    assert chain[0].ttft_timeout_s < gpu.latency.ceiling_s
    up = cfg.upstreams["vllm-ticket-router"]
    assert up.replicas == ["http://10.0.0.5:8000"]
    assert up.max_load_per_replica == gpu.fleet.max_concurrency_per_replica
    assert up.replicas_file == "/etc/agentdeploy/ticket-router.replicas"
    assert cfg.models[gpu.fleet.served_model_name].output == 0.0
    assert parse_config(__import__("yaml").safe_load(dump_yaml(cfg))) == cfg


def test_client_keys_from_env_are_hashed():
    a, b = "a" * 32, "b" * 40
    hashes = client_key_hashes_from_env(["intake", "sales-brief"], {"AGENTDEPLOY_KEY_SALES_BRIEF": f"{a}, {b}"})
    assert hashes == {"intake": [], "sales-brief": [hash_key(a), hash_key(b)]}
