"""boto3 access for the operations commands: sessions, one retry policy, errors a user can act on.

boto3 already honours the standard environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE,
shared config files), so tests point it at moto with nothing special here. What this module adds:
botocore's own retries are switched off and replaced by a single bounded, jittered backoff for
throttling, so a cron-run `deploy reap` neither hammers a throttled API nor hangs; and every
botocore failure becomes a `DeployError` naming what to change (exit 4 for credentials and
permissions, 1 for everything that failed at run time).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentdeploy.errors import DeployError, InvalidInput, MissingDependency, OperationFailed

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "AuthFailure",
        "OptInRequired",
    }
)
BAD_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
CREDENTIALS_HINT = (
    "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run `aws configure` / `aws sso login`"
)


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff for throttling, bounded in attempts and in each wait."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int) -> float:
        return self.rand() * min(self.cap_s, self.base_s * (2**attempt))


def _iam_action(client: Any, method: str) -> str:
    """`autoscaling:UpdateAutoScalingGroup` for (autoscaling client, 'update_auto_scaling_group')."""
    try:
        prefix = client.meta.service_model.signing_name
        op = client.meta.method_to_api_mapping.get(method, method)
    except AttributeError:  # a test double
        return method
    return f"{prefix}:{op}"


def map_error(err: Exception, client: Any, method: str, endpoint: str | None = None) -> DeployError:
    """The DeployError a botocore failure means for the user."""
    from botocore import exceptions as bexc

    action = _iam_action(client, method)
    if isinstance(err, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
        return MissingDependency("no AWS credentials found", hint=CREDENTIALS_HINT)
    if isinstance(err, bexc.ProfileNotFound):
        return MissingDependency(f"AWS profile not found: {err.kwargs.get('profile')}", hint=CREDENTIALS_HINT)
    if isinstance(err, (bexc.EndpointConnectionError, bexc.ConnectTimeoutError, bexc.ReadTimeoutError)):
        where = endpoint or getattr(err, "kwargs", {}).get("endpoint_url") or "the AWS endpoint"
        return OperationFailed(
            f"cannot reach {where} for {action}",
            hint="check the network, AWS_REGION, and AWS_ENDPOINT_URL if you set one",
        )
    if isinstance(err, bexc.ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        message = err.response.get("Error", {}).get("Message", "")
        if code in DENIED_CODES:
            return MissingDependency(
                f"AWS denied {action} ({code})",
                details=[message] if message else [],
                hint=f"grant {action} to the identity running deploy (or use a profile that has it)",
            )
        if code in BAD_CREDENTIAL_CODES:
            return MissingDependency(
                f"AWS rejected the credentials for {action} ({code})",
                details=[message] if message else [],
                hint=CREDENTIALS_HINT,
            )
        return OperationFailed(f"AWS {action} failed: {code or 'error'}" + (f": {message}" if message else ""))
    if isinstance(err, bexc.BotoCoreError):
        return OperationFailed(f"AWS {action} failed: {err}")
    if _is_parser_error(err):
        where = endpoint or "the AWS endpoint"
        return OperationFailed(
            f"{where} did not answer {action} as AWS does (the reply could not be parsed)",
            details=[str(err).splitlines()[0][:300]] if str(err) else [],
            hint="check AWS_ENDPOINT_URL (unset it for AWS itself) and any proxy between here and AWS",
        )
    raise err


def _is_parser_error(err: Exception) -> bool:
    """botocore's ResponseParserError is a plain Exception, not a BotoCoreError: something other than
    AWS answered (a proxy's HTML page, an empty 404)."""
    from botocore.parsers import ResponseParserError

    return isinstance(err, ResponseParserError)


def is_throttle(err: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(err, ClientError):
        return False
    return err.response.get("Error", {}).get("Code", "") in THROTTLE_CODES


class AwsClient:
    """One boto3 client behind the retry policy and the error mapping; the seam tests replace."""

    def __init__(self, client: Any, retry: RetryPolicy | None = None):
        self._client = client
        self._retry = retry or RetryPolicy()

    @property
    def raw(self) -> Any:
        return self._client

    def call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        return self._with_retry(method, lambda: getattr(self._client, method)(**kwargs))

    def paginate(self, method: str, result_key: str, **kwargs: Any) -> list[Any]:
        """All items of a paginated call (a throttled page restarts the listing, still bounded)."""

        def run() -> list[Any]:
            items: list[Any] = []
            for page in self._client.get_paginator(method).paginate(**kwargs):
                items.extend(page.get(result_key, []))
            return items

        return self._with_retry(method, run)

    def _with_retry(self, method: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.parsers import ResponseParserError

        policy = self._retry
        for attempt in range(policy.attempts):
            try:
                return fn()
            except (ClientError, BotoCoreError, ResponseParserError) as err:
                if is_throttle(err) and attempt + 1 < policy.attempts:
                    policy.sleep(policy.delay(attempt))
                    continue
                if is_throttle(err):
                    raise OperationFailed(
                        f"AWS kept throttling {_iam_action(self._client, method)} after {policy.attempts} attempts",
                        hint="run again later, or lower how often this runs",
                    ) from None
                raise map_error(err, self._client, method, self._endpoint()) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _endpoint(self) -> str | None:
        return getattr(getattr(self._client, "meta", None), "endpoint_url", None)


class AwsSession:
    """A boto3 session honouring the standard environment; hands out wrapped clients."""

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        retry: RetryPolicy | None = None,
        fallback_region: str | None = None,
    ):
        """`region` beats the environment and profile; `fallback_region` (the plan's) comes last."""
        try:
            import boto3
            from botocore.exceptions import ProfileNotFound
        except ImportError:
            raise MissingDependency(
                "boto3 is not installed", hint="pip install 'agentdeploy[cloud]'"
            ) from None
        try:
            self._session = boto3.session.Session(profile_name=profile, region_name=region)
            if not self._session.region_name and fallback_region:
                self._session = boto3.session.Session(profile_name=profile, region_name=fallback_region)
        except ProfileNotFound:
            raise MissingDependency(f"AWS profile {profile!r} not found", hint=CREDENTIALS_HINT) from None
        if not self._session.region_name:
            raise MissingDependency("no AWS region set", hint="pass --region or set AWS_REGION (or a profile region)")
        self._retry = retry or RetryPolicy()
        self._clients: dict[str, AwsClient] = {}

    @property
    def region(self) -> str:
        return str(self._session.region_name)

    def client(self, service: str) -> AwsClient:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            )
            self._clients[service] = AwsClient(self._make_client(service, config), self._retry)
        return self._clients[service]

    def _make_client(self, service: str, config: Any) -> Any:
        """boto3's client, its creation errors (a malformed region or endpoint URL) as exit 2."""
        from botocore import exceptions as bexc

        try:
            return self._session.client(service, config=config)
        except bexc.InvalidRegionError:
            raise InvalidInput(
                f"{self.region!r} is not an AWS region name",
                hint="use a region such as us-east-1 (--region, AWS_REGION, or the plan's defaults.region)",
            ) from None
        except bexc.BotoCoreError as err:
            raise map_error(err, None, service) from None
        except ValueError as err:  # botocore: "Invalid endpoint: ..." for a malformed AWS_ENDPOINT_URL
            raise InvalidInput(
                f"cannot use the AWS endpoint for {service}: {err}",
                hint="AWS_ENDPOINT_URL (or the profile's endpoint_url) must be a URL such as https://host:port; "
                "unset it to use AWS itself",
            ) from None
