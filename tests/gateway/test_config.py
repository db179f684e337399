"""serving/config.py: a bad config names the field, a missing upstream key names the variable."""

import pytest

from agentdeploy.errors import InvalidInput, MissingDependency
from agentdeploy.serving.config import check_secrets, load_config, parse_config
from tests.gateway.helpers import gateway_config


def test_bad_config_names_the_field(tmp_path):
    bad = gateway_config("http://x")
    bad["agents"]["api-agent"]["chain"] = [{"upstream": "nowhere", "model": "m"}]
    with pytest.raises(InvalidInput) as err:
        parse_config(bad, "gw.yaml")
    assert "nowhere" in " ".join(err.value.details)
    p = tmp_path / "gw.yaml"
    p.write_text("agents: [unclosed")
    with pytest.raises(InvalidInput, match="gw.yaml:1"):
        load_config(p)


def test_missing_upstream_key_is_reported_by_name():
    cfg = parse_config(gateway_config("http://x"))
    with pytest.raises(MissingDependency) as err:
        check_secrets(cfg, environ={})
    assert "TEST_ANTHROPIC_KEY" in err.value.details[0]
    check_secrets(cfg, environ={"TEST_ANTHROPIC_KEY": "v"})
