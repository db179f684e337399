"""The planner's gateway decision, provisioned: a gateway-less stack (the service business) gets
no gateway, network, load balancer, budget store or image, only its agents' configs, the
Anthropic key's secret and the alerts; `stack.gateway: true` or a GPU agent still gets them all."""

from __future__ import annotations

import json

import pytest
import yaml

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import DIM_AGENT, METRIC_SPEND_DAY_USD, METRIC_SPEND_USD
from agentdeploy.planner import build_plan, load_decision_file
from agentdeploy.stacks.limits import check_limits
from agentdeploy.stacks.policy import Resource, plain
from tests.stacks.harness import EXAMPLES, catalog, mixed_plan, run_main

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
#: What only the gateway (and fleets) need: none of it in a gateway-less stack.
GATEWAY_ONLY = {
    "aws:ecs/service:Service", "aws:ecs/taskDefinition:TaskDefinition", "aws:ecs/cluster:Cluster",
    "aws:lb/loadBalancer:LoadBalancer", "aws:lb/listener:Listener", "aws:lb/targetGroup:TargetGroup",
    "aws:elasticache/replicationGroup:ReplicationGroup", "aws:elasticache/subnetGroup:SubnetGroup",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet",
    "aws:ec2/internetGateway:InternetGateway", "aws:ec2/securityGroup:SecurityGroup",
    "aws:ecr/repository:Repository", "docker-build:index:Image",
}
#: Everything a gateway-less stack of API agents registers.
GATEWAY_LESS_TYPES = {
    "aws:secretsmanager/secret:Secret", "aws:secretsmanager/secretVersion:SecretVersion",
    "aws:ssm/parameter:Parameter", "aws:sns/topic:Topic", "aws:sns/topicPolicy:TopicPolicy",
    "aws:sns/topicSubscription:TopicSubscription", "aws:budgets/budget:Budget", ALARM,
}
KEY = "agentdeploy:anthropicApiKey"


def _config(path, **extra):
    return {"agentdeploy:decisionFile": str(path), "aws:region": "us-east-1", KEY: "sk-ant-test-key-000000", **extra}


def _pinned(tmp_path, gateway: bool):
    doc = yaml.safe_load((EXAMPLES / "service-business.yaml").read_text())
    doc["stack"]["gateway"] = gateway
    path = tmp_path / f"business-gateway-{gateway}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def business():
    plan = build_plan(load_decision_file(EXAMPLES / "service-business.yaml"))
    assert plan.infrastructure is not None
    assert plan.infrastructure.gateway.deploy is False
    return plan


@pytest.fixture(scope="module")
def bare_run():
    return run_main(_config(EXAMPLES / "service-business.yaml"), [KEY])


@pytest.fixture(scope="module")
def forced_run(tmp_path_factory):
    return run_main(_config(_pinned(tmp_path_factory.mktemp("forced"), True)), [KEY])


def test_gateway_less_stack_registers_nothing_only_the_gateway_needs(bare_run):
    types = {r.typ for r in bare_run.mocks.resources if not r.typ.startswith("agentdeploy:")}  # our components
    assert not types & GATEWAY_ONLY, sorted(types & GATEWAY_ONLY)
    assert types <= GATEWAY_LESS_TYPES, sorted(types - GATEWAY_LESS_TYPES)
    # no availability-zone lookup either: no network is made
    assert not [t for t, _ in bare_run.mocks.calls if "getAvailabilityZones" in t]


def test_gateway_less_stack_keeps_configs_key_and_alerts(bare_run, business):
    secrets = [r.inputs["name"] for r in bare_run.mocks.of_type("aws:secretsmanager/secret:Secret")]
    # the key (and the Hugging Face token the harness configures, stored though nothing reads it)
    assert "agentdeploy/test/anthropic-api-key" in secrets
    assert len(secrets) <= 2
    params = {r.inputs["name"]: json.loads(plain(r.inputs["value"])) for r in bare_run.mocks.of_type("aws:ssm/parameter:Parameter")}
    assert set(params) == {f"/agentdeploy/test/{a.name}/config" for a in business.agents}
    for agent in business.agents:
        doc = params[f"/agentdeploy/test/{agent.name}/config"]
        assert doc["model"] == agent.model
        assert doc["max_tokens"] == agent.max_tokens
        assert doc["cache"]["ttl"] == agent.cache.ttl
        assert doc["anthropic_api_key_secret_arn"].startswith("arn:aws:secret:")
    bare_run.mocks.one("aws:budgets/budget:Budget")
    assert bare_run.mocks.one("aws:sns/topic:Topic").inputs["name"] == "agentdeploy-test-alerts"


def test_gateway_less_exports_say_so_and_where_configs_are(bare_run, business):
    out = bare_run.exports
    assert out["gatewayUrl"] is None
    assert out["agentEndpoints"] == {}
    assert out["fleets"] == {}
    assert out["gateway"].startswith("none: clients call Claude directly")
    assert out["agentConfigs"] == {a.name: f"ssm:/agentdeploy/test/{a.name}/config" for a in business.agents}
    assert out["routes"] == {a.name: a.route for a in business.agents}


def test_gateway_less_alarms_read_the_day_totals_with_maximum(bare_run, business):
    """What `deploy spend publish` writes: a day's running total, read with Maximum per day."""
    alarms = bare_run.mocks.of_type(ALARM)
    assert len(alarms) == sum(len(a.budget.pace) for a in business.agents)
    for alarm in alarms:
        assert alarm.inputs["metricName"] == METRIC_SPEND_DAY_USD
        assert alarm.inputs["statistic"] == "Maximum"
        assert alarm.inputs["period"] == 86400
    intake = next(a for a in business.agents if a.name == "intake")
    at_100 = next(r for r in alarms if r.inputs["dimensions"][DIM_AGENT] == "intake" and "100pct" in r.inputs["name"])
    assert at_100.inputs["threshold"] == next(p.daily_usd for p in intake.budget.pace if p.pct == 100)


def test_stack_gateway_true_still_builds_the_gateway(forced_run):
    types = {r.typ for r in forced_run.mocks.resources}
    for typ in ("aws:ecs/service:Service", "aws:lb/loadBalancer:LoadBalancer",
                "aws:elasticache/replicationGroup:ReplicationGroup", "aws:ec2/natGateway:NatGateway",
                "docker-build:index:Image"):
        assert typ in types, typ
    assert forced_run.exports["gatewayUrl"]
    assert forced_run.exports["gateway"] == "deployed"
    assert set(forced_run.exports["agentEndpoints"]) == {"intake", "sales-brief", "marketing-drafts"}
    # the gateway publishes increments: its alarms sum them
    spend = forced_run.mocks.of_type(ALARM)
    assert spend
    assert all(r.inputs["metricName"] == METRIC_SPEND_USD and r.inputs["statistic"] == "Sum" for r in spend)


def test_stack_gateway_false_matches_the_planners_own_choice(tmp_path, bare_run):
    pinned = run_main(_config(_pinned(tmp_path, False)), [KEY])
    assert sorted((r.typ, r.name) for r in pinned.mocks.resources) == sorted((r.typ, r.name) for r in bare_run.mocks.resources)


def test_a_gpu_agent_still_gets_the_gateway():
    run = run_main(_config(EXAMPLES / "high-volume-router.yaml"), [KEY])
    types = {r.typ for r in run.mocks.resources}
    assert {"aws:ecs/service:Service", "aws:elasticache/replicationGroup:ReplicationGroup",
            "aws:ec2/natGateway:NatGateway"} <= types
    assert run.exports["gateway"] == "deployed"


def test_a_plan_with_a_fleet_and_no_gateway_is_refused(tmp_path):
    """The planner never writes this; a hand-edited plan file could."""
    from agentdeploy.stacks.components.secrets import SecretInputs
    from agentdeploy.stacks.program import build_stack
    from agentdeploy.stacks.settings import parse_settings

    plan = mixed_plan(tmp_path)
    assert plan.infrastructure is not None
    infra = plan.infrastructure.model_copy(update={"gateway": plan.infrastructure.gateway.model_copy(update={"deploy": False})})
    plan = plan.model_copy(update={"infrastructure": infra})
    with pytest.raises(InvalidInput) as err:
        build_stack(plan, catalog(), parse_settings({"decisionFile": "x.yaml", "gatewayScheme": "internal"}, where="test"),
                    SecretInputs(anthropic_api_key=None))  # type: ignore[arg-type]
    assert "ticket-router" in str(err.value)
    assert "stack.gateway" in (err.value.hint or "")


@pytest.mark.parametrize("gateway", [None, True], ids=["planned-gateway-less", "gateway-forced"])
def test_both_stay_within_aws_limits(gateway, tmp_path):
    path = EXAMPLES / "service-business.yaml" if gateway is None else _pinned(tmp_path, True)
    run = run_main(_config(path), [KEY], stack="s" * 40)
    resources = [Resource(r.typ, r.name, r.inputs) for r in run.mocks.resources]
    assert check_limits(resources) == []
    assert ("aws:ecs/service:Service" in {r.typ for r in resources}) is bool(gateway)


def test_a_gateway_less_stack_needs_no_gateway_edge_settings(tmp_path):
    """No certificate, no opt-out: fine without a gateway; refused once one is forced on."""
    bare = {"agentdeploy:gatewayPlainHttp": "false"}  # keeps the harness from adding TLS
    run = run_main(_config(EXAMPLES / "service-business.yaml", **bare), [KEY])
    assert run.exports["gateway"].startswith("none:")
    with pytest.raises(Exception, match="an internet-facing gateway needs HTTPS"):
        run_main(_config(_pinned(tmp_path, True), **bare), [KEY])


def test_deploy_outputs_shows_a_gateway_less_stacks_configs(bare_run, capsys):
    """What `deploy outputs` prints for the exports above: no gateway, each agent's config."""
    from agentdeploy.cli.stack_cmd import _print_outputs

    _print_outputs(bare_run.exports)
    text = capsys.readouterr().out
    assert "no gateway: none: clients call Claude directly" in text
    for name in ("intake", "sales-brief", "marketing-drafts"):
        assert f"ssm:/agentdeploy/test/{name}/config" in text
    assert "gatewayUrl" not in text
