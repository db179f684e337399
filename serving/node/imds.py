"""IMDSv2 client: a session token first, then token-authenticated reads.

AWS recommends polling spot/instance-action every 5 s; autoscaling/target-lifecycle-state
is read on the same cadence. Tokens are cached and renewed before
they expire, and once more on a 401 (the metadata service may have restarted).
"""

from __future__ import annotations

import time

import aiohttp

from agentdeploy.serving.node.notices import (
    SpotNotice,
    parse_rebalance,
    parse_spot_notice,
    parse_target_lifecycle_state,
)

DEFAULT_IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


class ImdsError(RuntimeError):
    pass


class ImdsClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str = DEFAULT_IMDS_URL, timeout_s: float = 2.0):
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._token: str | None = None
        self._token_expiry = 0.0

    async def _fetch_token(self) -> str:
        async with self._session.put(
            f"{self._base}/latest/api/token",
            headers={TOKEN_TTL_HEADER: str(TOKEN_TTL_S)},
            timeout=self._timeout,
        ) as resp:
            if resp.status != 200:
                raise ImdsError(f"IMDS token request answered {resp.status}")
            self._token = await resp.text()
            # Renew well before expiry so a poll never carries a token about to lapse.
            self._token_expiry = time.monotonic() + TOKEN_TTL_S * 0.9
            return self._token

    async def _token_value(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expiry:
            return await self._fetch_token()
        return self._token

    async def get(self, path: str) -> str | None:
        """The body of /latest/meta-data/<path>, or None when IMDS answers 404."""
        for attempt in range(2):
            token = await self._token_value()
            async with self._session.get(
                f"{self._base}/latest/meta-data/{path}", headers={TOKEN_HEADER: token}, timeout=self._timeout
            ) as resp:
                if resp.status == 401 and attempt == 0:
                    self._token = None
                    continue
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise ImdsError(f"IMDS {path} answered {resp.status}")
                return await resp.text()
        raise ImdsError(f"IMDS {path}: token rejected twice")

    async def spot_notice(self) -> SpotNotice | None:
        body = await self.get("spot/instance-action")
        return parse_spot_notice(body) if body is not None else None

    async def rebalance_notice_time(self) -> str | None:
        body = await self.get("events/recommendations/rebalance")
        return parse_rebalance(body).strftime("%Y-%m-%dT%H:%M:%SZ") if body is not None else None

    async def target_lifecycle_state(self) -> str | None:
        """The state the Auto Scaling group is moving us to ("InService", "Terminated", ...);
        None (404) off a group, where it is not applicable."""
        body = await self.get("autoscaling/target-lifecycle-state")
        return parse_target_lifecycle_state(body) if body is not None else None

    async def instance_id(self) -> str:
        value = await self.get("instance-id")
        if not value:
            raise ImdsError("IMDS has no instance-id")
        return value

    async def autoscaling_group(self) -> str | None:
        """From instance tags in metadata (needs InstanceMetadataTags enabled), else None."""
        return await self.get("tags/instance/aws:autoscaling:groupName")
