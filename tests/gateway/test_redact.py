"""serving/redact.py: loaded secret values are masked wherever they would leave the process."""

from agentdeploy.serving.redact import Redactor


def test_redactor_masks_loaded_secrets():
    r = Redactor()
    r.add(["sk-canary-123456"])
    assert r.text("key sk-canary-123456 leaked") == "key [REDACTED] leaked"
    assert b"sk-canary" not in r.bytes(b"x sk-canary-123456")
