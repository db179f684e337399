"""AWS's limits as code (stacks/limits.py): each check refuses what AWS refuses, and the whole
program stays within them for every example, with names at the decision file's maximum."""

from __future__ import annotations

import base64

import pytest
import yaml

from agentdeploy.errors import InvalidInput
from agentdeploy.stacks.limits import (
    NAME_RULES,
    NameRule,
    check_limits,
    check_name,
    check_ports,
    check_security_group,
    check_tag_limits,
    check_user_data,
)
from agentdeploy.stacks.policy import Resource
from tests.stacks.harness import EXAMPLES, dev_with_gateway, run_main

SG = "aws:ec2/securityGroup:SecurityGroup"
TG = "aws:lb/targetGroup:TargetGroup"


def test_security_group_descriptions_aws_rejects():
    # the two descriptions that made every GPU stack fail at preview
    bad = Resource(SG, "fleets-sg", {"description": "agentdeploy: GPU fleets' internal load balancer",
                                     "ingress": [{"description": "gateway -> fleet router", "fromPort": 1, "toPort": 1}]})
    messages = [v.message for v in check_security_group(bad)]
    assert len(messages) == 2
    assert "[\"'\"]" in messages[0]
    assert "['>']" in messages[1]
    good = Resource(SG, "fleets-sg", {"description": "agentdeploy: internal load balancer of the GPU fleets",
                                      "ingress": [{"description": "gateway to fleet router", "fromPort": 1, "toPort": 1}]})
    assert check_security_group(good) == []
    assert check_security_group(Resource(SG, "x", {"description": "d" * 256}))
    rules = [{"protocol": "tcp", "fromPort": p, "toPort": p} for p in range(61)]
    assert "61 ingress rules" in check_security_group(Resource(SG, "x", {"description": "d", "ingress": rules}))[0].message
    assert check_security_group(Resource(SG, "x", {"description": "d", "ingress": rules[:60]})) == []


def test_target_group_auto_names_count_pulumis_suffix():
    # "fleet-<agent>-tg" + "-" + 7 random characters: over 32 for agents over 15 characters
    assert check_name(Resource(TG, "fleet-sixteen-chars-ab-tg", {}))
    assert check_name(Resource(TG, "fleet-fifteen-chars-a-tg", {})) == []
    assert check_name(Resource(TG, "x", {"name": "a" * 33}))
    assert check_name(Resource(TG, "x", {"name": "ends-with-"}))
    assert check_name(Resource(TG, "x", {"namePrefix": "abcdefg"}))  # 7 + 26
    assert check_name(Resource(TG, "x", {"name": "a" * 32})) == []


def test_other_names():
    rg = "aws:elasticache/replicationGroup:ReplicationGroup"
    assert check_name(Resource(rg, "r", {"replicationGroupId": "a" * 41}))
    assert check_name(Resource(rg, "r", {"replicationGroupId": "a--b"}))
    assert check_name(Resource(rg, "r", {"replicationGroupId": "agentdeploy-prod-budget"})) == []
    assert check_name(Resource("aws:iam/role:Role", "r" * 57, {}))  # 57 + 8 > 64
    assert check_name(Resource("aws:cloudwatch/eventRule:EventRule", "e", {"name": "e" * 65}))


def test_user_data_16_kb_before_base64():
    lt = "aws:ec2/launchTemplate:LaunchTemplate"
    fits = base64.b64encode(b"x" * 16384).decode()
    assert check_user_data(Resource(lt, "lt", {"userData": fits})) == []
    over = base64.b64encode(b"x" * 16385).decode()
    assert "16385 bytes" in check_user_data(Resource(lt, "lt", {"userData": over}))[0].message


def test_tags():
    many = {f"k{i}": "v" for i in range(51)}
    assert check_tag_limits(Resource("aws:ec2/vpc:Vpc", "v", {"tags": many}))
    assert check_tag_limits(Resource("aws:ec2/vpc:Vpc", "v", {"tags": {"aws:x": "v"}}))
    assert check_tag_limits(Resource("aws:ec2/vpc:Vpc", "v", {"tags": {"k": "v" * 257}}))
    assert check_tag_limits(Resource("aws:ec2/vpc:Vpc", "v", {"tags": {"k" * 129: "v"}}))
    spec = {"tagSpecifications": [{"resourceType": "instance", "tags": many}]}
    assert check_tag_limits(Resource("aws:ec2/launchTemplate:LaunchTemplate", "lt", spec))
    assert check_tag_limits(Resource("aws:ec2/vpc:Vpc", "v", {"tags": {"k": "v"}})) == []


def test_ports():
    assert check_ports(Resource("aws:lb/listener:Listener", "l", {"port": 70000}))
    assert check_ports(Resource(TG, "t", {"port": 8000, "healthCheck": {"port": "0"}}))
    assert check_ports(Resource(TG, "t", {"port": 8000, "healthCheck": {"port": "traffic-port"}})) == []
    rule = {"protocol": "tcp", "fromPort": 9000, "toPort": 8000}
    assert check_security_group(Resource(SG, "s", {"description": "d", "ingress": [rule]}))
    all_traffic = {"protocol": "-1", "fromPort": 0, "toPort": 0}
    assert check_security_group(Resource(SG, "s", {"description": "d", "egress": [all_traffic]})) == []


def _lengthened(example: str, tmp_path) -> tuple[str, dict]:
    """The example with every agent renamed to the decision file's longest name (40)."""
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    renamed = {}
    for i, (name, agent) in enumerate(doc["agents"].items()):
        long = f"{name}-{i}-" + "x" * 40
        renamed[long[:40].rstrip("-")] = agent
    doc["agents"] = renamed
    path = tmp_path / f"long-{example}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path), renamed


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
@pytest.mark.parametrize("longest", [False, True], ids=["as-written", "names-at-40"])
def test_every_example_stays_within_aws_limits(example, longest, tmp_path):
    path = str(EXAMPLES / example)
    stack = "dev"
    if longest:
        path, renamed = _lengthened(example, tmp_path)
        assert max(len(n) for n in renamed) == 40
        stack = "s" * 40
    run = run_main({"agentdeploy:decisionFile": path, "aws:region": "us-east-1",
                    "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000"}, ["agentdeploy:anthropicApiKey"], stack=stack)
    resources = [Resource(r.typ, r.name, r.inputs) for r in run.mocks.resources]
    # a gateway-less stack (the planner's call for the service business) is its agents' configs,
    # the key's secret and the alerts; one with the gateway is ten times that
    assert len(resources) > (40 if run.exports["gateway"] == "deployed" else 10)
    violations = check_limits(resources)
    assert violations == [], "\n".join(map(str, violations))


def test_preflight_refuses_a_violation_naming_resource_and_rule(monkeypatch, tmp_path):
    """What `deploy preview` runs before Pulumi: a name over the limit is exit 2 with the resource.
    The dev stack's config over its decision file with the gateway forced on (the plan leaves
    the service business without one)."""
    from agentdeploy.stacks import limits
    from agentdeploy.stacks.dryrun import preflight

    config_file = tmp_path / "Pulumi.dev.yaml"
    config_file.write_text(yaml.safe_dump({"config": dev_with_gateway(tmp_path)}))
    monkeypatch.setitem(limits.NAME_RULES, "aws:lb/loadBalancer:LoadBalancer", NameRule("name", 10))
    with pytest.raises(InvalidInput) as err:
        preflight(config_file, "dev")
    assert err.value.exit_code == 2
    assert any("[aws-name-length] gateway-alb" in d for d in err.value.details), err.value.details
    monkeypatch.setitem(limits.NAME_RULES, "aws:lb/loadBalancer:LoadBalancer", NAME_RULES[TG])
    warnings = preflight(config_file, "dev").warnings
    assert any("gatewayPlainHttp is true" in w for w in warnings)
    # as committed, the plan leaves dev without a gateway: nothing serves plain HTTP, no warning
    from agentdeploy.stackconfig import find_project_root

    committed = preflight(find_project_root() / "stacks" / "Pulumi.dev.yaml", "dev")
    assert committed.violations == []
    assert not any("gatewayPlainHttp" in w for w in committed.warnings)


def test_preflight_leaves_no_event_loop_open(monkeypatch):
    """An event loop left open is destroyed at interpreter exit in no fixed order; when its
    self-pipe goes first, a traceback lands on stderr after `deploy up` refused or succeeded.
    The dry run's own loop and those the mock runtime makes in its executor threads are all
    closed (or already freed) when preflight returns, and no executor thread is left."""
    import asyncio
    import threading
    import weakref

    from agentdeploy.stackconfig import find_project_root
    from agentdeploy.stacks.dryrun import preflight

    made: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    real = asyncio.new_event_loop

    def recording() -> asyncio.AbstractEventLoop:
        loop = real()
        made.append(weakref.ref(loop))
        return loop

    monkeypatch.setattr(asyncio, "new_event_loop", recording)
    before = set(threading.enumerate())
    preflight(find_project_root() / "stacks" / "Pulumi.dev.yaml", "dev")
    assert len(made) >= 2  # the dry run's loop, and at least one of an executor thread
    assert [r for r in made if (loop := r()) is not None and not loop.is_closed()] == []
    assert set(threading.enumerate()) <= before
