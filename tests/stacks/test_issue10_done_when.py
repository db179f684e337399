"""Issue 10's "Done when", one test per bullet, under Pulumi's mock runtime, for every committed
stack (stacks/Pulumi.<name>.yaml as shipped) and for a GPU stack whose agent name has the
decision file's maximum length (40 characters) on a stack name of the maximum length too."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from agentdeploy.stackconfig import find_project_root, list_stacks
from agentdeploy.stacks.dryrun import stack_config_values
from agentdeploy.stacks.limits import check_name, check_security_group
from agentdeploy.stacks.policy import Resource, plain
from agentdeploy.templates.gpu_node import decode_user_data
from tests.stacks.harness import EXAMPLES, Run, dev_with_gateway, run_main
from tests.support.node_software import bare_name_installs

LONG_AGENT = "ticket-router-for-the-emea-support-queue"
LONG_STACK = "staging-emea-support-queue-eu-central-01"
assert len(LONG_AGENT) == 40
assert len(LONG_STACK) == 40


def _committed(stack: str) -> tuple[Run, dict[str, str]]:
    config, secrets = stack_config_values(find_project_root() / "stacks" / f"Pulumi.{stack}.yaml")
    config["agentdeploy:anthropicApiKey"] = "sk-ant-test-0000000000"
    return run_main(config, secrets + ["agentdeploy:anthropicApiKey"], stack=stack), config


def _long_gpu_stack(tmp_path_factory) -> tuple[Run, dict[str, str]]:
    doc = yaml.safe_load((EXAMPLES / "high-volume-router.yaml").read_text())
    doc["agents"] = {LONG_AGENT: doc["agents"]["ticket-router"]}
    path = tmp_path_factory.mktemp("long") / "long-names.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = {"agentdeploy:decisionFile": str(path), "aws:region": "us-east-1",
              "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000"}
    run = run_main(config, ["agentdeploy:anthropicApiKey"], stack=LONG_STACK)
    assert run.exports["routes"] == {LONG_AGENT: "gpu"}
    return run, config


def _dev_with_gateway(tmp_path_factory) -> tuple[Run, dict[str, str]]:
    """The committed dev stack (plain-HTTP opt-out included) with the gateway forced on: as
    committed, the planner leaves its three Claude agents without one."""
    config = dev_with_gateway(tmp_path_factory.mktemp("dev-gateway"))
    config["agentdeploy:anthropicApiKey"] = "sk-ant-test-0000000000"
    return run_main(config, ["agentdeploy:anthropicApiKey"], stack="dev"), config


STACKS = [*list_stacks(find_project_root()), "long-gpu", "dev-gateway"]


@pytest.fixture(scope="module", params=STACKS)
def stack(request, tmp_path_factory) -> tuple[str, Run, dict[str, str]]:
    if request.param == "long-gpu":
        return (request.param, *_long_gpu_stack(tmp_path_factory))
    if request.param == "dev-gateway":
        return (request.param, *_dev_with_gateway(tmp_path_factory))
    return (request.param, *_committed(request.param))


def _has_gateway(run: Run) -> bool:
    return run.exports["gateway"] == "deployed"


def _has_fleets(name: str) -> bool:
    return name not in ("dev", "dev-gateway")


def _resources(run: Run) -> list[Resource]:
    return [Resource(r.typ, r.name, r.inputs) for r in run.mocks.resources]


def _user_data(run: Run) -> list[str]:
    return [decode_user_data(plain(r.inputs["userData"]))
            for r in run.mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")]


def test_the_committed_stacks_are_dev_and_prod():
    assert {"dev", "prod"} <= set(STACKS)


def test_no_security_group_description_aws_rejects(stack):
    _, run, _ = stack
    groups = [r for r in _resources(run) if r.typ == "aws:ec2/securityGroup:SecurityGroup"]
    assert bool(groups) == _has_gateway(run)
    assert [str(v) for r in groups for v in check_security_group(r)] == []


def test_no_alb_or_target_group_name_over_32(stack):
    name, run, _ = stack
    elb = [r for r in _resources(run) if r.typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup")]
    assert bool(elb) == _has_gateway(run)
    assert [str(v) for r in elb for v in check_name(r)] == []
    if _has_fleets(name):  # GPU stacks: the fleet's target group is named explicitly, within 32
        fleet_tgs = [r.inputs["name"] for r in elb if r.name.startswith("fleet-") and r.typ.endswith("TargetGroup")]
        assert fleet_tgs
        assert all(len(n) <= 32 for n in fleet_tgs)


#: A pip install naming our distribution (by name, from whatever index pip is pointed at).
BY_NAME = re.compile(r"pip[^\n]*\binstall\b[^\n]*(?<![/\w.-])['\"]?agentdeploy(?:\[[^\]]*\])?(?:[=<>~!]=?|['\"\s]|$)")


def test_no_node_installs_agentdeploy_by_name_from_an_index(stack):
    name, run, _ = stack
    documents = _user_data(run)
    assert bool(documents) == _has_fleets(name)
    for doc in documents:
        assert not BY_NAME.search(doc), "a node pip-installs agentdeploy by name"
        # the node agent is the stack's own wheel, checked against its recorded SHA-256
        wheel = run.mocks.one("aws:s3/bucketObjectv2:BucketObjectv2")
        assert wheel.inputs["key"] in doc
        assert "sha256sum --check --strict" in doc
        # and nothing else comes by a bare name: pip only in hash-checking mode or from local
        # files, the engine only as an image pinned by digest
        assert bare_name_installs(doc) == []
        assert "--require-hashes" in doc
        assert "@sha256:" in doc
    # the patterns are not vacuous: the old install lines are caught
    old = "\"$VENV/bin/pip\" install --quiet 'vllm==0.32.0' 'agentdeploy[serving]==0.1.0' boto3"
    assert BY_NAME.search(old)
    assert len(bare_name_installs(old + "\n\"$VENV/bin/pip\" install --quiet boto3")) == 2
    assert bare_name_installs("ExecStart=/usr/bin/docker run --rm --gpus all vllm/vllm-openai:v0.31.0 m")
    assert bare_name_installs("IMAGE=vllm/vllm-openai:latest\ndocker pull \"$IMAGE\"")
    assert bare_name_installs("pip install -r requirements.txt")


def test_the_engine_image_is_the_catalogs_pinned_one(stack):
    """Every fleet's vllm.service runs the catalog's engine image, by digest, on all GPUs (a
    tag-only image is refused: tests/stacks/test_node_image_and_weights.py)."""
    from agentdeploy.planner.catalog import load_catalog

    name, run, config = stack
    image = load_catalog().engine_image.reference
    for doc in _user_data(run):
        unit = next(f["content"] for f in yaml.safe_load(doc)["write_files"] if f["path"].endswith("/vllm.service"))
        exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        assert f" {image} " in exec_start
        assert "--gpus all" in exec_start


def test_a_launching_lifecycle_hook(stack):
    name, run, _ = stack
    groups = run.mocks.of_type("aws:autoscaling/group:Group")
    hooks = run.mocks.of_type("aws:autoscaling/lifecycleHook:LifecycleHook")
    assert bool(groups) == _has_fleets(name)
    for group in groups:
        launching = [h for h in hooks if h.inputs["autoscalingGroupName"] == group.inputs["name"]
                     and h.inputs["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"]
        assert len(launching) == 1
        assert launching[0].inputs["defaultResult"] == "ABANDON"
        assert all(f"AGENTDEPLOY_READY_HOOK={launching[0].inputs['name']}" in doc for doc in _user_data(run))


def test_no_scaling_alarm_treats_missing_data_as_breaching(stack):
    _, run, _ = stack
    alarms = run.mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    assert [a.name for a in alarms if a.inputs.get("treatMissingData") == "breaching"] == []


def test_a_shared_budget_store(stack):
    from agentdeploy.serving.config import parse_config
    from agentdeploy.templates.gateway import BUDGET_STORE_ENV

    _, run, _ = stack
    if not _has_gateway(run):  # nothing to share a budget between: no store at all
        assert run.mocks.of_type("aws:elasticache/replicationGroup:ReplicationGroup") == []
        return
    redis = run.mocks.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert redis.inputs["transitEncryptionEnabled"] is True
    assert redis.inputs["engine"] == "redis"
    container = json.loads(run.mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])[0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    config = parse_config(yaml.safe_load(env["AGENTDEPLOY_GATEWAY_CONFIG"]))
    assert config.budget_store.backend == "redis"
    assert config.budget_store.redis_url is not None
    assert config.budget_store.redis_url.env == BUDGET_STORE_ENV
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert secrets[BUDGET_STORE_ENV].startswith("arn:aws:")
    assert BUDGET_STORE_ENV not in env  # by reference


def test_no_internet_facing_listener_serves_plain_http_except_by_the_opt_out(stack):
    _, run, config = stack
    opted_out = config.get("agentdeploy:gatewayPlainHttp") == "true" and _has_gateway(run)
    public = {f"arn:aws:loadbalancer:us-east-1:123456789012:{r.name}"
              for r in run.mocks.of_type("aws:lb/loadBalancer:LoadBalancer") if r.inputs.get("internal") is False}
    plain_http = [r.name for r in run.mocks.of_type("aws:lb/listener:Listener")
                  if r.inputs["loadBalancerArn"] in public and r.inputs["protocol"] == "HTTP"
                  and any(a["type"] != "redirect" for a in r.inputs["defaultActions"])]
    assert bool(plain_http) == opted_out, plain_http
