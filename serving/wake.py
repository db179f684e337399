"""Wake a fleet at zero from the gateway, in seconds rather than minutes.

The alarm path (the gateway publishes UnmetDemand, an alarm evaluates it, a policy sets the
group's capacity) takes a publish interval plus the alarm's periods before a launch, and a
cooldown can hold it. The gateway knows the moment a request finds no healthy node, so it
asks the group itself: DescribeAutoScalingGroups, and when its desired capacity is 0,
SetDesiredCapacity(capacity, HonorCooldown=False). The request never waits for this: it goes
down its chain (the fallback) as before, and the call runs in a worker thread.

At most one call per `min_interval_s` per fleet: concurrent requests share one attempt, and a
failed attempt (throttled, denied, the endpoint down) is logged and counted, then retried no
sooner than the interval. The alarm path stays as the backup. Permission: the task role may
SetDesiredCapacity on this group's ARN only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from agentdeploy.serving.config import WakeSpec
from agentdeploy.serving.discovery import aws_client, error_kind
from agentdeploy.serving.metrics import GatewayMetrics

log = logging.getLogger("agentdeploy.gateway.wake")

WOKEN, ALREADY_UP, RATE_LIMITED, ERROR, NOT_FOUND, SWITCHED_OFF = (
    "woken", "already_up", "rate_limited", "error", "not_found", "switched_off")


def wake_capacity(desired: int, max_size: int, capacity: int) -> int | None:
    """What to set the group to (pure): None unless it is at zero; never above its max size
    (a group whose max is 0 is switched off on purpose and stays off)."""
    if desired > 0 or max_size <= 0:
        return None
    return min(capacity, max_size)


class FleetWaker:
    """One fleet's wake: rate-limited, never on the request path."""

    def __init__(self, upstream: str, spec: WakeSpec, metrics: GatewayMetrics,
                 clock: Callable[[], float] = time.monotonic, client: Callable[[], Any] | None = None) -> None:
        self.upstream, self.spec, self.metrics, self.clock = upstream, spec, metrics, clock
        self._client_factory = client or (lambda: aws_client("autoscaling", spec.region))
        self._client: Any = None
        self._last: float | None = None
        self.task: asyncio.Task[str] | None = None

    def request(self) -> bool:
        """A request found the fleet without a healthy node: start one wake unless one ran
        within `min_interval_s` or is still running. Returns at once; True when it started."""
        now = self.clock()
        if (self.task is not None and not self.task.done()) or (
                self._last is not None and now - self._last < self.spec.min_interval_s):
            self.metrics.wakes.inc((self.upstream, RATE_LIMITED))
            return False
        self._last = now
        self.task = asyncio.ensure_future(self._wake())
        return True

    async def _wake(self) -> str:
        try:
            outcome, detail = await asyncio.to_thread(self._call)
        except Exception as err:  # noqa: BLE001 - a failed wake must never reach the request
            kind = error_kind(err)
            self.metrics.wakes.inc((self.upstream, ERROR))
            log.warning(orjson.dumps({"event": "fleet_wake_failed", "upstream": self.upstream, "group": self.spec.asg_name,
                                      "error": kind, "detail": str(err)[:300]}).decode())
            return ERROR
        self.metrics.wakes.inc((self.upstream, outcome))
        log.info(orjson.dumps({"event": "fleet_wake", "upstream": self.upstream, "group": self.spec.asg_name,
                               "outcome": outcome, **detail}).decode())
        return outcome

    def _call(self) -> tuple[str, dict[str, int]]:
        """Blocking: read the group, raise it when it is at zero."""
        if self._client is None:
            self._client = self._client_factory()
        client = self._client
        groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.spec.asg_name])["AutoScalingGroups"]
        if not groups:
            return NOT_FOUND, {}
        group = groups[0]
        desired, max_size = int(group["DesiredCapacity"]), int(group["MaxSize"])
        target = wake_capacity(desired, max_size, self.spec.capacity)
        if target is None:
            return (ALREADY_UP if desired > 0 else SWITCHED_OFF), {"desired": desired, "max": max_size}
        client.set_desired_capacity(AutoScalingGroupName=self.spec.asg_name, DesiredCapacity=target, HonorCooldown=False)
        return WOKEN, {"desired": target}


def wakers_for(specs: dict[str, WakeSpec], previous: dict[str, FleetWaker], metrics: GatewayMetrics) -> dict[str, FleetWaker]:
    """One waker per fleet upstream with a `wake` block; an unchanged spec keeps its waker (and
    so its rate limit) across a config reload."""
    out: dict[str, FleetWaker] = {}
    for name, spec in specs.items():
        old = previous.get(name)
        out[name] = old if old is not None and old.spec == spec else FleetWaker(name, spec, metrics)
    return out
