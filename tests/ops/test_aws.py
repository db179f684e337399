"""Error mapping and throttling retry of the boto3 edge, with real botocore clients.

botocore's Stubber makes a real client answer with AWS error codes (AccessDenied, Throttling)
that moto cannot be made to produce; the missing-credentials case goes through boto3's own
credential chain with every source emptied.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from agentdeploy.errors import MissingDependency, OperationFailed
from agentdeploy.ops.aws import AwsClient, AwsSession, RetryPolicy
from tests.ops.cloud import loopback_http


def _stubbed(service: str = "autoscaling"):
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def _policy(sleeps: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_s=0.5, cap_s=8.0, sleep=sleeps.append, rand=lambda: 1.0)


def test_throttling_is_retried_with_backoff_then_succeeds() -> None:
    client, stub = _stubbed()
    stub.add_client_error("describe_auto_scaling_groups", service_error_code="Throttling", http_status_code=400)
    stub.add_client_error("describe_auto_scaling_groups", service_error_code="Throttling", http_status_code=400)
    stub.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": []})
    sleeps: list[float] = []
    with stub:
        result = AwsClient(client, _policy(sleeps)).call("describe_auto_scaling_groups")
    assert result["AutoScalingGroups"] == []
    assert sleeps == [0.5, 1.0]  # exponential; rand pinned to 1.0 shows the ceiling of each jittered wait
    stub.assert_no_pending_responses()


def test_throttling_gives_up_after_the_bound() -> None:
    client, stub = _stubbed("ec2")
    for _ in range(4):
        stub.add_client_error("describe_spot_price_history", service_error_code="RequestLimitExceeded", http_status_code=503)
    sleeps: list[float] = []
    with stub, pytest.raises(OperationFailed) as caught:
        AwsClient(client, _policy(sleeps)).call("describe_spot_price_history")
    assert len(sleeps) == 3
    assert caught.value.exit_code == 1
    assert "throttling ec2:DescribeSpotPriceHistory after 4 attempts" in caught.value.message


def test_waits_are_capped() -> None:
    policy = RetryPolicy(attempts=10, base_s=0.5, cap_s=8.0, rand=lambda: 1.0)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_access_denied_names_the_permission() -> None:
    client, stub = _stubbed()
    stub.add_client_error("update_auto_scaling_group", service_error_code="AccessDenied", http_status_code=403,
                          service_message="User is not authorized")
    sleeps: list[float] = []
    with stub, pytest.raises(MissingDependency) as caught:
        AwsClient(client, _policy(sleeps)).call("update_auto_scaling_group", AutoScalingGroupName="g", DesiredCapacity=0)
    assert caught.value.exit_code == 4
    assert sleeps == []
    assert "autoscaling:UpdateAutoScalingGroup" in caught.value.message
    assert "grant autoscaling:UpdateAutoScalingGroup" in (caught.value.hint or "")


def test_expired_credentials_are_a_credentials_error() -> None:
    client, stub = _stubbed("cloudwatch")
    stub.add_client_error("list_metrics", service_error_code="ExpiredToken", http_status_code=403)
    with stub, pytest.raises(MissingDependency) as caught:
        AwsClient(client, _policy([])).call("list_metrics")
    assert "rejected the credentials" in caught.value.message


def test_other_errors_are_runtime_failures() -> None:
    client, stub = _stubbed()
    stub.add_client_error("describe_auto_scaling_groups", service_error_code="ValidationError", http_status_code=400,
                          service_message="bad filter")
    with stub, pytest.raises(OperationFailed) as caught:
        AwsClient(client, _policy([])).call("describe_auto_scaling_groups")
    assert caught.value.exit_code == 1
    assert "ValidationError: bad filter" in caught.value.message


def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254 from a test


def test_missing_credentials(aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_credentials(monkeypatch, tmp_path)
    with pytest.raises(MissingDependency) as caught:
        AwsSession().client("autoscaling").call("describe_auto_scaling_groups")
    assert caught.value.message == "no AWS credentials found"
    assert "AWS_PROFILE" in (caught.value.hint or "")


def test_unknown_profile_and_missing_region(aws, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingDependency) as caught:
        AwsSession(profile="no-such-profile")
    assert "no-such-profile" in caught.value.message
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(MissingDependency) as caught:
        AwsSession()
    assert "region" in caught.value.message
    assert AwsSession(fallback_region="eu-west-1").region == "eu-west-1"
    assert AwsSession(region="us-west-2", fallback_region="eu-west-1").region == "us-west-2"


def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.moto import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(OperationFailed) as caught:
        AwsSession(region="us-east-1").client("autoscaling").call("describe_auto_scaling_groups")
    assert "cannot reach" in caught.value.message


class _NotAws(BaseHTTPRequestHandler):
    """What answers when AWS_ENDPOINT_URL points at a web server or a proxy's error page."""

    status = 404

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"<html><body><h1>Not Found</h1><p>nginx</html"
        self.send_response(self.status)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def not_aws():
    with loopback_http(_NotAws) as url:
        yield url


def test_an_answer_that_is_not_aws_is_a_clear_failure(aws, project: Path, not_aws: str) -> None:
    """botocore's ResponseParserError is no BotoCoreError: it used to escape as a traceback."""
    from .deploy_cli import assert_clean_error, deploy

    proc = deploy("reap", "--stack", "router", env={"AWS_ENDPOINT_URL": not_aws})
    assert_clean_error(proc, 1, f"error: {not_aws} did not answer autoscaling:DescribeAutoScalingGroups as AWS does")
    assert "hint: check AWS_ENDPOINT_URL" in proc.stderr
    status = deploy("status", "--stack", "router", "--json", env={"AWS_ENDPOINT_URL": not_aws})
    assert status.returncode == 1
    assert "Traceback" not in status.stderr
    assert json.loads(status.stdout)["error"] == "OperationFailed"


def test_a_malformed_region_is_invalid_input(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .deploy_cli import assert_clean_error, deploy

    monkeypatch.delenv("AGENTDEPLOY_PROJECT", raising=False)  # a stack known by tags alone: --region is used
    monkeypatch.chdir(tmp_path)
    proc = deploy("reap", "--stack", "remote", "--region", "us_east_1")
    assert_clean_error(proc, 2, "error: 'us_east_1' is not an AWS region name")
    spot = deploy("catalog", "refresh-spot", "--region", "us_east_1")
    assert_clean_error(spot, 2, "'us_east_1' is not an AWS region name")


def test_a_malformed_endpoint_url_is_invalid_input(aws, project: Path) -> None:
    from .deploy_cli import assert_clean_error, deploy

    proc = deploy("status", "--stack", "router", env={"AWS_ENDPOINT_URL": "not a url"})
    assert_clean_error(proc, 2, "cannot use the AWS endpoint for autoscaling: Invalid endpoint: not a url")
    assert "AWS_ENDPOINT_URL" in proc.stderr
