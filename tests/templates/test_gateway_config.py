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


def test_a_provisioned_fleet_is_discovered_from_its_target_group_and_woken_from_zero():
    from agentdeploy.naming import NODE_HEALTH_PORT, VLLM_PORT
    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog
    from agentdeploy.templates.gateway_config import DISCOVERY_REFRESH_S, WAKE_MIN_INTERVAL_S, FleetRefs

    catalog = load_catalog(include_home=False)
    plan = build_plan(load_decision_file("examples/high-volume-router.yaml"), catalog)
    gpu = plan.agent("ticket-router")
    tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/ad-prod-ticket-router/0123"
    cfg = build_gateway_config(plan, catalog, fleets={"ticket-router": FleetRefs("agentdeploy-prod-ticket-router", tg)})
    up = cfg.upstreams["vllm-ticket-router"]
    assert up.replicas == [] and up.replicas_file is None  # no load balancer URL: each node directly
    assert up.discovery is not None
    assert (up.discovery.region, up.discovery.target_group_arn, up.discovery.asg_name) == (plan.region, tg, None)
    assert (up.discovery.port, up.discovery.refresh_s) == (VLLM_PORT, DISCOVERY_REFRESH_S)
    assert up.node_health_port == NODE_HEALTH_PORT
    assert up.wake is not None
    assert up.wake.model_dump() == {"asg_name": "agentdeploy-prod-ticket-router", "capacity": max(1, gpu.fleet.min_replicas),
                                    "min_interval_s": WAKE_MIN_INTERVAL_S, "region": plan.region}
    assert parse_config(__import__("yaml").safe_load(dump_yaml(cfg))) == cfg

    # Without a target group the group's own instances are the source.
    cfg = build_gateway_config(plan, catalog, fleets={"ticket-router": FleetRefs("agentdeploy-prod-ticket-router")})
    discovery = cfg.upstreams["vllm-ticket-router"].discovery
    assert discovery is not None and discovery.asg_name == "agentdeploy-prod-ticket-router"
    # A local render (no fleets) neither discovers nor wakes.
    plain = build_gateway_config(plan, catalog, vllm_replicas={"ticket-router": ["http://10.0.0.5:8000"]})
    assert plain.upstreams["vllm-ticket-router"].discovery is None and plain.upstreams["vllm-ticket-router"].wake is None


def test_discovery_and_wake_are_refused_on_a_claude_upstream():
    from agentdeploy.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        parse_config({"upstreams": {"a": {"kind": "anthropic", "wake": {"asg_name": "g"}}},
                      "agents": {"x": {"chain": [{"upstream": "a", "model": "m"}], "max_tokens_default": 1, "max_tokens_cap": 1}}})
    assert any("upstreams.a" in d and "self-hosted (openai) fleet" in d for d in err.value.details)
