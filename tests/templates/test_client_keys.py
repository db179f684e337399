"""Client keys: render and the stack refuse keys shorter than 32 characters (naming where, never
the key); `deploy keygen` makes keys they accept."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentdeploy.errors import InvalidInput
from agentdeploy.templates.gateway import parse_client_keys
from agentdeploy.templates.gateway_config import (
    MIN_CLIENT_KEY_CHARS,
    check_client_key_lengths,
    client_key_hashes_from_env,
    generate_client_key,
)

SHORT = "short-key-1234"


def test_short_keys_are_refused_without_echoing_them():
    with pytest.raises(InvalidInput) as err:
        check_client_key_lengths({"intake": ["k" * 40, SHORT]})
    text = err.value.render()
    assert "intake (key 2: 14 characters)" in text
    assert SHORT not in text
    assert "deploy keygen" in text
    check_client_key_lengths({"intake": ["k" * MIN_CLIENT_KEY_CHARS]})


def test_render_refuses_short_keys_from_the_environment():
    with pytest.raises(InvalidInput, match="shorter than 32"):
        client_key_hashes_from_env(["intake"], {"AGENTDEPLOY_KEY_INTAKE": f"{'a' * 40},{SHORT}"})
    assert len(client_key_hashes_from_env(["intake"], {"AGENTDEPLOY_KEY_INTAKE": "a" * 40})["intake"]) == 1


def test_stack_refuses_short_gateway_client_keys(tmp_path):
    from tests.stacks.harness import mixed_decision_file, run_main

    config = {"agentdeploy:decisionFile": str(mixed_decision_file(tmp_path)), "aws:region": "us-east-1",
              "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000", "agentdeploy:gatewayClientKeys": SHORT}
    with pytest.raises(InvalidInput, match="shorter than 32") as err:
        run_main(config, ["agentdeploy:anthropicApiKey", "agentdeploy:gatewayClientKeys"])
    assert SHORT not in err.value.render()


def test_generated_keys_are_long_random_and_url_safe():
    keys = {generate_client_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(k) >= MIN_CLIENT_KEY_CHARS and k.replace("_", "").replace("-", "").isalnum() for k in keys)
    check_client_key_lengths({"*": sorted(keys)})


def test_deploy_keygen_prints_keys_the_stack_accepts():
    out = subprocess.run([sys.executable, "-c", "from agentdeploy.cli.main import main; main()", "keygen", "--json",
                          "--agent", "intake", "--count", "2"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    keys = parse_client_keys(out.stdout)
    assert list(keys) == ["intake"]
    assert len(keys["intake"]) == 2
    check_client_key_lengths(keys)
