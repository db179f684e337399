"""What a GPU node runs on (issue 10, item 2): the AMI from AWS's public SSM parameter, the root
volume and gp3 throughput sized from the model's weight bytes, the HF token required (and only
given) where the weights are gated."""

from __future__ import annotations

import shlex

import pulumi
import pytest

from agentdeploy.planner import build_plan, load_decision_file
from agentdeploy.stacks.gated import is_gated
from agentdeploy.stacks.node_volume import GP3_MAX_MIBPS, node_volume, weight_gb
from agentdeploy.stacks.policy import plain
from agentdeploy.templates.gpu_node import decode_user_data
from tests.stacks.harness import EXAMPLES, catalog, run_main


@pytest.fixture(scope="module")
def fleet():
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"))
    return next(a.fleet for a in plan.agents if a.fleet)


def test_volume_grows_with_the_weights(fleet):
    cat = catalog()
    small = node_volume(cat, fleet)
    assert small.weight_gb == pytest.approx(cat.open_models[fleet.open_model].params_b * 2)
    big = node_volume(cat, fleet.model_copy(update={"open_model": "llama-3.3-70b"}))
    assert big.size_gb >= 90 + 2 * weight_gb(cat, fleet.model_copy(update={"open_model": "llama-3.3-70b"}))
    assert big.size_gb > small.size_gb
    assert big.throughput_mibps == GP3_MAX_MIBPS  # 140 GB in ~2 minutes is past gp3's ceiling
    assert big.iops * 0.25 >= big.throughput_mibps  # gp3: at most 0.25 MiB/s per IOPS
    assert node_volume(cat, fleet, override_gb=300).size_gb == 300


def test_launch_template_uses_the_ssm_ami_and_the_sized_volume(tmp_path):
    run = run_main({"agentdeploy:decisionFile": str(EXAMPLES / "high-volume-router.yaml"), "aws:region": "us-east-1",
                    "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000"}, ["agentdeploy:anthropicApiKey"])
    calls = [args for token, args in run.mocks.calls if token == "aws:ssm/getParameter:getParameter"]
    assert calls == [{"name": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"}]
    lt = run.mocks.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert lt.inputs["imageId"] == "ami-0gpu"
    ebs = lt.inputs["blockDeviceMappings"][0]["ebs"]
    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"))
    expected = node_volume(catalog(), next(a.fleet for a in plan.agents if a.fleet))
    assert (ebs["volumeSize"], ebs["throughput"], ebs["iops"]) == (expected.size_gb, expected.throughput_mibps, expected.iops)
    user_data = decode_user_data(lt.inputs["userData"])
    assert "/opt/dlami/nvme" in user_data  # weights on instance NVMe where there is some


def test_gated_weights_need_the_token_and_only_their_fleets_get_it(tmp_path):
    cat = catalog()
    assert is_gated(cat, "llama-3.2-3b", "meta-llama/Llama-3.2-3B-Instruct")
    assert not is_gated(cat, "qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct")
    config = {"agentdeploy:decisionFile": str(EXAMPLES / "high-volume-router.yaml"), "aws:region": "us-east-1",
              "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000", "agentdeploy:huggingFaceToken": None}
    with pytest.raises(pulumi.RunError, match="meta-llama/Llama-3.2-3B-Instruct") as err:
        run_main(config, ["agentdeploy:anthropicApiKey"])
    assert "agentdeploy:huggingFaceToken" in str(err.value)


@pytest.mark.parametrize("image", ["vllm/vllm-openai:v0.31.0", "vllm/vllm-openai:latest",
                                   "vllm/vllm-openai:v0.31.0@sha256:c1c9f6fd"])
def test_a_vllm_image_not_pinned_by_digest_is_refused_with_its_key(image):
    from agentdeploy.errors import InvalidInput
    from agentdeploy.stacks.settings import parse_settings

    with pytest.raises(InvalidInput) as refused:
        parse_settings({"decisionFile": "x.yaml", "vllmImage": image}, where="stacks/Pulumi.prod.yaml")
    assert refused.value.message.startswith("stacks/Pulumi.prod.yaml")
    (detail,) = refused.value.details
    assert detail.startswith("agentdeploy:vllmImage:")
    assert "digest" in detail or "sha256" in detail


def test_a_vllm_image_pinned_by_digest_reaches_the_nodes():
    pinned = "registry.example.com:5000/team/vllm-openai:v0.31.0@sha256:" + "0f" * 32
    run = run_main({"agentdeploy:decisionFile": str(EXAMPLES / "high-volume-router.yaml"), "aws:region": "us-east-1",
                    "agentdeploy:vllmImage": pinned, "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000"},
                   ["agentdeploy:anthropicApiKey"])
    docs = [decode_user_data(plain(lt.inputs["userData"]))
            for lt in run.mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")]
    assert docs
    assert all(f"ENGINE_IMAGE={shlex.quote(pinned)}" in d for d in docs)


def test_a_tag_only_engine_image_in_the_catalog_is_refused(tmp_path):
    from agentdeploy.errors import InvalidInput
    from agentdeploy.planner.catalog import load_catalog

    override = tmp_path / "engine.yaml"
    override.write_text('engine_image:\n  reference: "vllm/vllm-openai:v0.32.0"\n  vllm_version: "0.32.0"\n'
                        '  source: "a tag someone typed"\n  as_of: 2026-12-02\n')
    with pytest.raises(InvalidInput) as refused:
        load_catalog([override])
    text = str(refused.value.to_dict())
    assert "engine_image.reference" in text
    assert "not pinned by digest" in text
