"""When to stop vLLM during a drain (pure decisions over numbers and times).

The order is fixed by the deadline (a spot notice's 2 minutes, or the scale-in drain budget that
fits the lifecycle hook's heartbeat timeout): stop new traffic first (health 503, deregister),
let in-flight requests finish, then SIGTERM vLLM — whose `--shutdown-timeout` drain rejects new
requests and finishes the rest — early enough that its drain ends before the instance does,
leaving `margin_s` for completing the lifecycle hook.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DrainTiming:
    #: vLLM's own --shutdown-timeout: how long its drain may take after SIGTERM.
    shutdown_timeout_s: float
    #: Reserved after vLLM's drain for the lifecycle hook and slack.
    margin_s: float = 10.0
    #: Minimum time between turning unhealthy and SIGTERM when idle, so the load balancer and
    #: the gateway have seen the 503 / deregistration and a request already on its way lands.
    settle_s: float = 5.0


def sigterm_deadline(notice_epoch: float, timing: DrainTiming) -> float:
    """The latest moment SIGTERM can go out and vLLM's drain still end inside the notice."""
    return notice_epoch - timing.shutdown_timeout_s - timing.margin_s


def stop_reason(
    now: float,
    drain_started: float,
    notice_epoch: float,
    in_flight: int | None,
    timing: DrainTiming,
    *,
    vllm_down: bool = False,
) -> str | None:
    """Why vLLM should get SIGTERM now, or None to keep waiting.

    in_flight None means the count could not be read this time (a busy vLLM answers /metrics
    slowly): keep waiting, the deadline still bounds it. vllm_down means it refuses
    connections: nothing is left to wait for.
    """
    if now >= sigterm_deadline(notice_epoch, timing):
        return "deadline"
    if vllm_down:
        return "vllm-down"
    if in_flight is None:
        return None
    if in_flight == 0 and now >= drain_started + timing.settle_s:
        return "idle"
    return None


def exit_wait_deadline(now: float, notice_epoch: float, timing: DrainTiming) -> float:
    """How long to wait for vLLM to exit after SIGTERM before completing the hook anyway."""
    return min(now + timing.shutdown_timeout_s + 5.0, notice_epoch - timing.margin_s / 2)


#: What stacks/components/gpu_fleet.py adds to vLLM's shutdown timeout for the terminating
#: hook's heartbeat timeout (`heartbeat_timeout = shutdown_timeout_s + 30`).
HOOK_HEARTBEAT_EXTRA_S = 30.0


def default_drain_budget_s(shutdown_timeout_s: float, notice_poll_s: float) -> float:
    """How long a scale-in drain may take: the hook's heartbeat timeout, less one poll interval
    (the group may have been waiting that long before the agent saw the state change), so the
    lifecycle action is completed before the group gives up waiting and terminates anyway."""
    return max(0.0, shutdown_timeout_s + HOOK_HEARTBEAT_EXTRA_S - notice_poll_s)
