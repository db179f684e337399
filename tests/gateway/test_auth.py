"""serving/auth.py: keys are matched by hash only, and found in either protocol's header."""

from agentdeploy import naming
from agentdeploy.serving.auth import KeyIndex, presented_key
from agentdeploy.serving.config import dump_yaml, parse_config
from tests.gateway.helpers import API_KEY, GPU_KEY, SHARED_KEY, gateway_config


def test_key_index_matches_hashes_only():
    cfg = parse_config(gateway_config("http://127.0.0.1:1"))
    idx = KeyIndex(cfg)
    assert idx.lookup(API_KEY) == "api-agent"
    assert idx.lookup(GPU_KEY) == "gpu-agent"
    assert idx.lookup(SHARED_KEY) == naming.SHARED_KEY
    assert idx.lookup("nope") is None
    assert idx.lookup(None) is None
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"x-api-key": "k"}) == "k"
    assert API_KEY not in dump_yaml(cfg)
