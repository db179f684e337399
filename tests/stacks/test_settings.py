"""Stack settings and program errors: a bad stack config names the key to fix, no traceback."""

from __future__ import annotations

import pulumi
import pytest

from agentdeploy.errors import InvalidInput
from agentdeploy.stackconfig import find_project_root, list_stacks, load_stack_config
from agentdeploy.stacks.settings import parse_settings
from tests.stacks.harness import mixed_decision_file, run_main


def test_defaults():
    s = parse_settings({"decisionFile": "examples/x.yaml", "gatewayScheme": "internal"})
    assert s.vpc_id is None
    assert s.az_count == 2
    assert s.gateway_desired_count is None
    assert (s.gateway_tasks("dev"), s.gateway_tasks("prod"), s.gateway_tasks("prod-eu")) == (1, 2, 2)
    # AWS's public parameter for the Ubuntu 24.04 DLAMI (Python 3.12; we need >= 3.11)
    assert s.gpu_ami_parameter == "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
    assert s.activate_cost_allocation_tag is False
    assert parse_settings({"decisionFile": "x", "activateCostAllocationTag": "true",
                           "gatewayPlainHttp": "true"}).activate_cost_allocation_tag is True


def test_secret_keys_are_not_settings():
    s = parse_settings({"decisionFile": "x.yaml", "anthropicApiKey": "sk-ant-x", "huggingFaceToken": "hf_x",
                        "gatewayScheme": "internal"})
    assert "sk-ant" not in s.model_dump_json()


@pytest.mark.parametrize("values, key", [
    ({}, "agentdeploy:decisionFile"),
    ({"decisionFile": "x", "azCount": 1}, "agentdeploy:azCount"),
    ({"decisionFile": "x", "gatewayCpu": "lots"}, "agentdeploy:gatewayCpu"),
    ({"decisionFile": "x", "vpcId": "vpc-1", "privateSubnetIds": ["a"]}, "privateSubnetIds"),
    ({"decisionFile": "x", "typo": 1}, "agentdeploy:typo"),
    ({"decisionFile": "x", "activateCostAllocationTag": "maybe"}, "agentdeploy:activateCostAllocationTag"),
])
def test_bad_settings_name_the_key(values, key):
    with pytest.raises(InvalidInput) as err:
        parse_settings(values)
    assert key in "\n".join(err.value.details)


def test_missing_anthropic_key_is_one_clear_error(tmp_path):
    with pytest.raises(pulumi.RunError, match=r"no agentdeploy:anthropicApiKey[\s\S]*config set --secret"):
        run_main({"agentdeploy:decisionFile": str(mixed_decision_file(tmp_path)), "aws:region": "us-east-1"}, [])


def test_region_mismatch_names_both(tmp_path):
    with pytest.raises(pulumi.RunError, match="aws:region is eu-west-1 but .* us-east-1"):
        run_main({"agentdeploy:decisionFile": str(mixed_decision_file(tmp_path)), "aws:region": "eu-west-1",
                  "agentdeploy:anthropicApiKey": "k"}, ["agentdeploy:anthropicApiKey"])


def test_list_setting_must_be_a_list(tmp_path):
    with pytest.raises(pulumi.RunError, match="agentdeploy:allowedCidrs must be a list"):
        run_main({"agentdeploy:decisionFile": str(mixed_decision_file(tmp_path)), "aws:region": "us-east-1",
                  "agentdeploy:anthropicApiKey": "k", "agentdeploy:allowedCidrs": "10.0.0.0/8"},
                 ["agentdeploy:anthropicApiKey"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stack_configs_deploy_under_mocks(stack):
    """The example stacks as shipped: found where the Pulumi CLI finds them, and the program
    builds them (with a stand-in Anthropic key, since real ones are set per machine)."""
    root = find_project_root()
    assert stack in list_stacks(root)
    cfg = load_stack_config(stack, root)
    assert cfg.config_file == root / "stacks" / f"Pulumi.{stack}.yaml"
    assert cfg.decision_file.is_file()
    config = {k: (v if isinstance(v, str) else __import__("json").dumps(v)) for k, v in cfg.config.items()}
    config["agentdeploy:anthropicApiKey"] = "sk-ant-test-0000000000"
    run = run_main(config, ["agentdeploy:anthropicApiKey"], stack=stack)
    if stack == "dev":  # the planner leaves the service business's Claude agents without a gateway
        assert run.exports["gatewayUrl"] is None
        assert run.exports["gateway"].startswith("none:")
        assert set(run.exports["agentConfigs"]) == {"intake", "sales-brief", "marketing-drafts"}
    else:
        assert run.exports["gatewayUrl"].startswith("http://")
    gpu = [r for r in run.mocks.resources if r.typ == "aws:autoscaling/group:Group"]
    assert bool(gpu) == (stack == "prod")
    if stack == "prod":
        assert not run.mocks.of_type("aws:ec2/vpc:Vpc")  # prod uses the team's VPC


def test_an_unset_gateway_image_is_built_and_pushed_by_the_stack_and_a_set_one_is_used(tmp_path):
    """No manual docker step: unset, `up` builds the Dockerfile, pushes it to the stack's own
    ECR repository and the task runs it by digest; set, the given image is used as is. (The dev
    stack with the gateway forced on: as committed, its plan has none, so no image either.)"""
    import json

    from tests.stacks.harness import dev_with_gateway

    config = dev_with_gateway(tmp_path)
    config["agentdeploy:anthropicApiKey"] = "sk-ant-test-0000000000"
    config.pop("agentdeploy:gatewayImage", None)
    run = run_main(config, ["agentdeploy:anthropicApiKey"], stack="dev")
    image = run.mocks.one("docker-build:index:Image")
    repo = run.mocks.one("aws:ecr/repository:Repository")
    assert image.inputs["push"] is True
    assert image.inputs["dockerfile"]["location"] == str(find_project_root() / "Dockerfile")
    assert image.inputs["registries"][0]["address"] == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo.inputs['name']}"
    container = json.loads(run.mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])[0]
    assert container["image"] == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/agentdeploy-dev-gateway@sha256:{'0' * 64}"

    config["agentdeploy:gatewayImage"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-gateway@sha256:" + "1" * 64
    run = run_main(config, ["agentdeploy:anthropicApiKey"], stack="dev")
    assert not run.mocks.of_type("docker-build:index:Image")
    assert not run.mocks.of_type("aws:ecr/repository:Repository")
    container = json.loads(run.mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])[0]
    assert container["image"] == config["agentdeploy:gatewayImage"]


def test_setting_aliases_are_the_config_keys_named_in_one_place():
    from agentdeploy.naming import CONFIG_DECISION_FILE, CONFIG_PLAN_FILE
    from agentdeploy.stacks.settings import NAMESPACE, ProvisionSettings

    aliases = {f"{NAMESPACE}:{info.alias}" for info in ProvisionSettings.model_fields.values()}
    assert {CONFIG_DECISION_FILE, CONFIG_PLAN_FILE} <= aliases
