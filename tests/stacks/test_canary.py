"""A secret set in the stack config reaches only its Secrets Manager secret version, as a
Pulumi secret: never user data, a parameter, a launch template, an environment variable, a
task definition or a stack output."""

from __future__ import annotations

import pytest
from pulumi.runtime.rpc import _special_secret_sig as SECRET_SIG_VALUE
from pulumi.runtime.rpc import _special_sig_key as SECRET_SIG

from agentdeploy.templates.gpu_node import decode_user_data
from tests.stacks.harness import mixed_decision_file, run_main, strings_in

CANARIES = {
    "agentdeploy:anthropicApiKey": "sk-ant-CANARY-7f3a9c1e",
    "agentdeploy:gatewayClientKeys": "client-CANARY-52b8d0-0123456789abcdef0123",
    "agentdeploy:huggingFaceToken": "hf_CANARY_e41c77",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    decision = mixed_decision_file(tmp_path_factory.mktemp("canary"))
    config = {"agentdeploy:decisionFile": str(decision), "aws:region": "us-east-1", **CANARIES}
    return run_main(config, secret_keys=list(CANARIES))


def test_program_registered_a_full_stack(run):
    types = {r.typ for r in run.mocks.resources}
    assert "aws:autoscaling/group:Group" in types
    assert "aws:ecs/taskDefinition:TaskDefinition" in types
    assert "aws:ssm/parameter:Parameter" in types
    # 3 config + 1 vLLM key + the budget store's URL (its AUTH token inside)
    assert len(run.mocks.of_type("aws:secretsmanager/secretVersion:SecretVersion")) == 5


@pytest.mark.parametrize("key", sorted(CANARIES))
def test_canary_reaches_only_its_secret_version(run, key):
    canary = CANARIES[key]
    holders = [(r.typ, r.name) for r in run.mocks.resources if any(canary in s for s in strings_in(r.inputs))]
    assert len(holders) == 1, f"{key} found in {holders}"
    typ, name = holders[0]
    assert typ == "aws:secretsmanager/secretVersion:SecretVersion"
    version = run.mocks.one(typ, name)
    # On the wire to the engine the value travels inside Pulumi's secret envelope, which is
    # what makes the engine encrypt it in state.
    assert version.inputs["secretString"] == {SECRET_SIG: SECRET_SIG_VALUE, "value": canary}
    assert run.secret_flags[name] is True, f"{name}.secret_string is not a Pulumi secret"


def test_every_secret_version_is_a_pulumi_secret(run):
    assert run.secret_flags and all(run.secret_flags.values()), run.secret_flags


def test_no_canary_in_outputs(run):
    assert run.exports, "the program exported nothing"
    texts = strings_in(run.exports)
    for key, canary in CANARIES.items():
        assert not any(canary in t for t in texts), f"{key} leaked into stack outputs"


def test_user_data_references_secrets_by_arn(run):
    lt = run.mocks.one("aws:ec2/launchTemplate:LaunchTemplate")
    user_data = decode_user_data(lt.inputs["userData"])
    assert user_data.startswith("#cloud-config")
    assert "VLLM_API_KEY=arn:aws:" in user_data
    assert "HF_TOKEN=arn:aws:" in user_data
    for canary in CANARIES.values():
        assert canary not in user_data
    assert "generated-vllm-key" not in user_data  # the random vLLM key stays out too


def test_gateway_gets_secrets_by_reference(run):
    import json

    task = run.mocks.one("aws:ecs/taskDefinition:TaskDefinition")
    container = json.loads(task.inputs["containerDefinitions"])[0]
    refs = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert set(refs) == {"ANTHROPIC_API_KEY", "VLLM_API_KEY_TICKET_ROUTER", "AGENTDEPLOY_BUDGET_STORE_URL"}
    assert all(v.startswith("arn:aws:") for v in refs.values())
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert "generated-vllm-key" not in json.dumps(env)


def test_client_keys_reach_the_gateway_only_as_hashes(run):
    import hashlib
    import json

    import yaml

    task = run.mocks.one("aws:ecs/taskDefinition:TaskDefinition")
    env = {e["name"]: e["value"] for e in json.loads(task.inputs["containerDefinitions"])[0]["environment"]}
    config = yaml.safe_load(env["AGENTDEPLOY_GATEWAY_CONFIG"])
    digest = "sha256:" + hashlib.sha256(CANARIES["agentdeploy:gatewayClientKeys"].encode()).hexdigest()
    assert config["shared_key_hashes"] == [digest]
