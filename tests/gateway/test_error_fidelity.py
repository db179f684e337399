"""Error fidelity (issue 13, item 4): a provider's refusal keeps its code and type in the client's
protocol, and a rejection that is the client's fault (a 4xx other than 408/409/429) is never
routed around to another provider."""

from __future__ import annotations

import pytest

from agentdeploy.serving import fallback as fb
from agentdeploy.serving.protocol.writers import client_error_type
from tests.gateway.helpers import API_KEY, GPU_KEY, chat, env_for, gateway_config, messages

pytestmark = pytest.mark.integration

POLICY = {"status": 400, "error_type": "invalid_request_error", "code": "content_policy_violation",
          "message": "Your request was rejected as a result of our safety system."}


@pytest.fixture
def setup(claude_emulator, standin_factory, gateway_factory):
    def make(**kw):
        st = standin_factory()
        gw = gateway_factory(gateway_config(claude_emulator.base_url, replicas=[st.base_url], **kw), env=env_for(claude_emulator))
        return gw, st, claude_emulator

    return make


def test_an_openai_refusal_keeps_its_code_and_type_for_each_client(setup):
    gw, st, claude = setup()
    st.fault(**POLICY, times=2)
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["type"], err["code"], err["message"]) == ("invalid_request_error", "content_policy_violation", POLICY["message"])
    assert r.headers["x-agentdeploy-error"] == fb.CONTENT_FILTER
    a = messages(gw.url, GPU_KEY)
    assert a.status_code == 400
    body = a.json()
    assert body["type"] == "error"
    assert (body["error"]["type"], body["error"]["code"]) == ("invalid_request_error", "content_policy_violation")
    assert claude.requests() == []  # never routed around
    assert len(st.requests) == 2  # and never retried


def test_a_claude_error_type_reaches_an_openai_client_as_that_type(setup):
    gw, st, claude = setup()
    claude.faults({"status": 400, "message": "messages.0: bad content"})
    r = chat(gw.url, API_KEY)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["message"] == "messages.0: bad content"


@pytest.mark.parametrize("status", [400, 402, 405, 415, 422])
def test_a_client_fault_rejection_is_never_routed_around(setup, status):
    gw, st, claude = setup()
    st.fault(status=status, error_type="BadRequestError", message="temperature must be non-negative")
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == status
    assert r.json()["error"]["type"] == "BadRequestError"
    assert claude.requests() == []
    assert len(st.requests) == 1


@pytest.mark.parametrize("status, reason", [(408, fb.UPSTREAM_TIMEOUT), (409, fb.CONFLICT)])
def test_408_and_409_are_not_the_clients_fault_retried_then_routed_around(setup, status, reason):
    gw, st, claude = setup()
    st.fault(status=status, times=2)
    r = chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert r.json()["model"] == "claude-haiku-4-5"
    assert r.headers["x-agentdeploy-fallback"] == f"vllm:{reason}"
    assert len(st.requests) == 2  # one retry, then Claude


def test_anthropic_client_gets_a_messages_api_type_for_a_free_form_upstream_type():
    assert client_error_type("anthropic", 400, "BadRequestError") == "invalid_request_error"
    assert client_error_type("anthropic", 403, "Forbidden") == "permission_error"
    assert client_error_type("anthropic", 503, "ServiceUnavailable") == "api_error"
    assert client_error_type("anthropic", 400, "invalid_request_error") == "invalid_request_error"
    assert client_error_type("openai", 400, "BadRequestError") == "BadRequestError"


def test_error_bodies_keep_string_codes_and_drop_vllms_numeric_ones():
    f = fb.classify_status(400, "openai", b'{"error":{"message":"m","type":"invalid_request_error","code":"content_policy_violation"}}')
    assert (f.reason, f.code) == (fb.CONTENT_FILTER, "content_policy_violation")
    f = fb.classify_status(400, "openai", b'{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}')
    assert (f.reason, f.error_type, f.code, f.message) == (fb.CLIENT_ERROR, "BadRequestError", "", "bad")
