"""The policy checks as plain functions, and the same checks wrapped as a Pulumi policy pack."""

from __future__ import annotations

import base64
import json

import pytest

from agentdeploy.naming import stack_tags
from agentdeploy.stacks.policy import (
    Resource,
    check_all,
    check_asg_within,
    check_iam_scoped,
    check_no_secret_values,
    check_tags,
)

TAGS = {**stack_tags("dev"), "Name": "x"}


def _asg(max_size=4, propagate=True, role="gpu-fleet"):
    tags = {**stack_tags("dev", "router", role)}
    return Resource("aws:autoscaling/group:Group", "asg", {
        "maxSize": max_size, "tags": [{"key": k, "value": v, "propagateAtLaunch": propagate} for k, v in tags.items()]})


def _role_policy(statements):
    return Resource("aws:iam/rolePolicy:RolePolicy", "p", {"policy": json.dumps({"Version": "2012-10-17", "Statement": statements})})


# --- tags ----------------------------------------------------------------------------------

def test_tagged_resource_passes():
    assert check_tags(Resource("aws:ec2/vpc:Vpc", "vpc", {"tags": TAGS}), stack="dev") == []


@pytest.mark.parametrize("tags, fragment", [
    (None, "has no tags"),
    ({"Name": "x"}, "missing tag agentdeploy:stack"),
    ({**TAGS, "agentdeploy:stack": "prod"}, "not 'dev'"),
])
def test_tag_violations(tags, fragment):
    inputs = {} if tags is None else {"tags": tags}
    found = check_tags(Resource("aws:ec2/vpc:Vpc", "vpc", inputs), stack="dev")
    assert any(fragment in v.message for v in found), found


def test_untaggable_types_are_exempt_and_non_aws_ignored():
    assert check_tags(Resource("aws:iam/rolePolicy:RolePolicy", "p", {})) == []
    assert check_tags(Resource("random:index/randomPassword:RandomPassword", "r", {})) == []


def test_asg_tags_must_propagate_and_name_the_fleet():
    assert check_tags(_asg()) == []
    assert any("not propagated" in v.message for v in check_tags(_asg(propagate=False)))
    assert any("gpu-fleet" in v.message for v in check_tags(_asg(role="gateway")))


# --- secret values -------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnop",
    "export HF_TOKEN=hf_abcdefghijklmnopqrstu",
    "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
    "-----BEGIN RSA PRIVATE KEY-----",
    "password: Zq8mW3rT9vX2yB6nK4pL",
])
def test_secret_in_user_data_is_caught_even_base64(text):
    lt = Resource("aws:ec2/launchTemplate:LaunchTemplate", "lt", {"userData": base64.b64encode(text.encode()).decode()})
    assert check_no_secret_values(lt)


def test_arn_references_are_fine():
    text = "VLLM_API_KEY=arn:aws:secretsmanager:us-east-1:123456789012:secret:agentdeploy/dev/x/vllm-api-key-AbC"
    lt = Resource("aws:ec2/launchTemplate:LaunchTemplate", "lt", {"userData": base64.b64encode(text.encode()).decode()})
    assert check_no_secret_values(lt) == []


def test_secret_in_parameter_and_container_env_is_caught():
    param = Resource("aws:ssm/parameter:Parameter", "p", {"type": "String", "value": '{"key": "sk-ant-api03-abcdefghij"}'})
    assert check_no_secret_values(param)
    secure = Resource("aws:ssm/parameter:Parameter", "p", {"type": "SecureString", "value": "sk-ant-api03-abcdefghij"})
    assert check_no_secret_values(secure) == []
    task = Resource("aws:ecs/taskDefinition:TaskDefinition", "t", {"containerDefinitions": json.dumps(
        [{"name": "gw", "environment": [{"name": "ANTHROPIC_API_KEY", "value": "sk-ant-api03-abcdefghij"}]}])})
    assert "container gw env ANTHROPIC_API_KEY" in check_no_secret_values(task)[0].message


# --- IAM -----------------------------------------------------------------------------------

def test_iam_named_arns_pass_and_conditioned_metrics_pass():
    assert check_iam_scoped(_role_policy([
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": ["arn:aws:secretsmanager:us-east-1:1:secret:a"]},
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "AgentDeploy"}}},
    ])) == []


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"},
    {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": ["arn:aws:secretsmanager:us-east-1:1:secret:a"]},
    {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/*:*"},
])
def test_iam_wildcards_are_violations(statement):
    assert check_iam_scoped(_role_policy([statement]))


SECRETS = "arn:aws:secretsmanager:us-east-1:123456789012:secret:agentdeploy/dev"
PARAMS = "arn:aws:ssm:us-east-1:123456789012:parameter/agentdeploy/dev"


@pytest.mark.parametrize("resource", [
    f"{SECRETS}/ticket-router-vllm-api-key-AbC123",  # the ARN as Secrets Manager returns it
    f"{SECRETS}/ticket-router-vllm-api-key-??????",  # the name, any random suffix
    f"{PARAMS}/intake/config",
])
def test_one_named_secret_or_parameter_passes(resource):
    assert check_iam_scoped(_role_policy([
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameter"], "Resource": [resource]}])) == []


@pytest.mark.parametrize("resource", [
    f"{SECRETS}/*",                              # every secret of the stack, the Anthropic key included
    f"{SECRETS}/*-vllm-api-key-??????",          # every fleet's vLLM key, not just this fleet's
    f"{SECRETS}/ticket-router-vllm-api-key-*",   # also ticket-router-vllm-api-key-old-AbC123
    f"{PARAMS}/*",                               # every agent's config
])
def test_a_node_reading_more_than_its_own_secrets_is_a_violation(resource):
    found = check_iam_scoped(_role_policy([
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameter"], "Resource": [resource]}]))
    assert [v.message for v in found] == [f"['secretsmanager:GetSecretValue', 'ssm:GetParameter'] allowed on "
                                          f"['{resource}']; name the ARNs"]


# --- capacity ------------------------------------------------------------------------------

def test_asg_within_plan():
    assert check_asg_within(_asg(4), {"router": 4}) == []
    assert "exceeds" in check_asg_within(_asg(5), {"router": 4})[0].message
    assert "no fleet" in check_asg_within(_asg(2), {"other": 4})[0].message
    assert check_asg_within(_asg(20), 16)


def test_check_all_collects_everything():
    bad = [Resource("aws:ec2/vpc:Vpc", "vpc", {}), _role_policy([{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}])]
    assert {v.policy for v in check_all(bad)} == {"tags", "iam-scoped"}


# --- the same checks as a Pulumi policy pack ---------------------------------------------------

def test_policy_pack_wraps_the_checks():
    pytest.importorskip("pulumi_policy", reason="pulumi-policy is in the cloud extra")
    from pulumi_policy import ResourceValidationArgs

    from agentdeploy.stacks.policy_pack import policies

    pack = {p.name: p for p in policies()}
    assert set(pack) == {"agentdeploy-tags", "no-secret-values", "iam-scoped", "asg-within-ceiling", "aws-limits"}

    def run(policy, typ, props, config=None):
        reported = []
        args = ResourceValidationArgs(typ, props, f"urn:pulumi:dev::agentdeploy::{typ}::x", "x", None, None, config or {})
        pack[policy].validate(args, lambda msg, urn=None: reported.append(msg))
        return reported

    assert run("agentdeploy-tags", "aws:ec2/vpc:Vpc", {}) == ["aws:ec2/vpc:Vpc has no tags"]
    assert run("agentdeploy-tags", "aws:ec2/vpc:Vpc", {"tags": TAGS}) == []
    assert run("iam-scoped", "aws:iam/rolePolicy:RolePolicy", _role_policy(
        [{"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*"}]).inputs)
    asg = _asg(10).inputs
    assert run("asg-within-ceiling", "aws:autoscaling/group:Group", asg, {"maxReplicas": 8})
    assert run("asg-within-ceiling", "aws:autoscaling/group:Group", asg, {"maxReplicas": 12}) == []
    assert run("asg-within-ceiling", "aws:autoscaling/group:Group", _asg(20).inputs)  # default ceiling 16
    sg = {"description": "gateway -> fleet", "tags": TAGS}
    assert run("aws-limits", "aws:ec2/securityGroup:SecurityGroup", sg)
    assert run("aws-limits", "aws:lb/targetGroup:TargetGroup", {"name": "t" * 33})
    assert run("aws-limits", "aws:lb/targetGroup:TargetGroup", {"name": "t" * 32}) == []


def test_log_streams_of_one_named_group_are_scoped_enough():
    from agentdeploy.stacks.policy import too_broad

    assert not too_broad("arn:aws:logs:us-east-1:123456789012:log-group:/agentdeploy/dev/router/nodes:log-stream:*")
    assert too_broad("arn:aws:logs:us-east-1:123456789012:log-group:*:log-stream:*")
    assert too_broad("arn:aws:logs:us-east-1:123456789012:log-group:/agentdeploy/*")
