"""templates/gateway_config.py: a batch-route agent's config says so, with the catalog's discount."""

from agentdeploy.serving.config import dump_yaml, parse_config
from agentdeploy.templates.gateway_config import build_gateway_config


def test_batch_agent_carries_the_catalogs_batch_discount():
    import yaml

    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog

    catalog = load_catalog(include_home=False)
    plan = build_plan(load_decision_file("examples/service-business.yaml"), catalog)
    cfg = build_gateway_config(plan, catalog)
    batch_agents = [a.name for a in plan.agents if a.batch]
    assert "marketing-drafts" in batch_agents
    for agent in plan.agents:
        spec = cfg.agents[agent.name].batch
        if agent.batch:
            assert spec is not None
            assert spec.discount == catalog.claude(agent.model).batch_discount
            assert spec.realtime == "reject"
        else:
            assert spec is None
    again = parse_config(yaml.safe_load(dump_yaml(cfg)))
    assert again.agents["marketing-drafts"].batch == cfg.agents["marketing-drafts"].batch
