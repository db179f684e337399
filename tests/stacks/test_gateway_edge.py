"""The gateway's edge (issue 10, item 5): private or TLS, never plain HTTP on the internet
unless opted out; the URL is the certificate's name; ECS waits for steady state."""

from __future__ import annotations

import pulumi
import pytest

from agentdeploy.errors import InvalidInput
from agentdeploy.stacks.settings import parse_settings
from tests.stacks.harness import mixed_decision_file, run_main

LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"


@pytest.fixture(scope="module")
def decision(tmp_path_factory):
    return mixed_decision_file(tmp_path_factory.mktemp("edge"))


def _run(decision, **config):
    base = {"agentdeploy:decisionFile": str(decision), "aws:region": "us-east-1",
            "agentdeploy:anthropicApiKey": "sk-ant-test-0000000000"}
    return run_main({**base, **config}, ["agentdeploy:anthropicApiKey"])


def _gateway_listeners(run):
    return {r.name: r for r in run.mocks.of_type(LISTENER) if r.name.startswith("gateway-")}


@pytest.mark.parametrize("values", [
    {},  # internet-facing by default, no certificate, no opt-out
    {"certificateArn": "arn:aws:acm:us-east-1:1:certificate/x"},  # a certificate with no name it covers
    {"gatewayScheme": "internal", "hostedZoneId": "Z1"},  # a zone with no record name
])
def test_settings_refuse_an_unsafe_or_unreachable_edge(values):
    """The plain-HTTP rule is checked where the gateway is built (a gateway-less stack has no
    edge to secure); the others on parse."""
    with pytest.raises(InvalidInput) as err:
        parse_settings({"decisionFile": "x", **values}).check_gateway_edge()
    assert "agentdeploy:" in "\n".join(err.value.details)


def test_internal_gateway_sits_in_the_private_subnets(decision):
    run = _run(decision, **{"agentdeploy:gatewayScheme": "internal"})
    alb = run.mocks.one(LB, "gateway")
    assert alb.inputs["internal"] is True
    assert alb.inputs["subnets"] == run.mocks.one("aws:ecs/service:Service").inputs["networkConfiguration"]["subnets"]
    assert run.exports["gatewayUrl"] == "http://gateway-alb.elb.example"


def test_tls_gateway_url_is_the_certificates_name_with_its_dns_record(decision):
    run = _run(decision, **{"agentdeploy:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/c",
                            "agentdeploy:gatewayDomain": "agents.example.com", "agentdeploy:hostedZoneId": "Z123"})
    assert run.exports["gatewayUrl"] == "https://agents.example.com"
    record = run.mocks.one("aws:route53/record:Record")
    assert (record.inputs["name"], record.inputs["type"], record.inputs["zoneId"]) == ("agents.example.com", "A", "Z123")
    listeners = _gateway_listeners(run)
    assert listeners["gateway-https"].inputs["protocol"] == "HTTPS"
    assert [a["type"] for a in listeners["gateway-http"].inputs["defaultActions"]] == ["redirect"]


def test_plain_http_on_the_internet_only_by_opt_out_and_always_warned(decision, monkeypatch):
    from agentdeploy.stacks.program import PLAIN_HTTP_WARNING

    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: warned.append(msg))
    run = _run(decision, **{"agentdeploy:gatewayPlainHttp": "true"})
    assert PLAIN_HTTP_WARNING in warned
    assert [a["type"] for a in _gateway_listeners(run)["gateway-http"].inputs["defaultActions"]] == ["forward"]


def test_service_waits_for_steady_state_after_its_listener(decision):
    run = _run(decision)
    service = run.mocks.one("aws:ecs/service:Service")
    assert service.inputs["waitForSteadyState"] is True
    assert service.inputs["desiredCount"] == 1  # stack "test"; a prod stack gets 2 (test_settings)
