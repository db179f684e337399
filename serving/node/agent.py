"""The node agent: watch for termination notices, drain vLLM in order, report health and demand.

Three loops share one `NodeState`:
- notices: IMDS spot/instance-action, rebalance recommendation and the Auto Scaling target
  lifecycle state every few seconds;
- health: vLLM's /health, so /healthz can answer instantly from state (an ALB or the gateway
  probing us must not wait on a loaded vLLM);
- demand: vLLM's queue gauges (and its /load count, which does not lag) read every few seconds,
  published each interval (a minute, on the minute) as a statistic set whose Maximum is the
  interval's peak, so short requests between readings still count (demand.py).
A spot notice, or the group's decision to terminate the instance (target lifecycle state
"Terminated": scale-in, capacity rebalance, instance refresh), starts the drain once: 503 ->
deregister -> wait for in-flight (or the deadline) -> SIGTERM vLLM -> wait for it to exit ->
complete the lifecycle hook. A scale-in's deadline is the drain budget, which fits the hook's
heartbeat timeout. A rebalance recommendation is not terminal: it is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agentdeploy.naming import METRIC_DEMAND
from agentdeploy.serving.node.cloud import (
    METRIC_REBALANCE,
    METRIC_SPOT_INTERRUPTION,
    Datum,
    LifecycleCompleter,
    MetricsSink,
    TargetDeregistrar,
    demand_data,
)
from agentdeploy.serving.node.demand import DemandWindow
from agentdeploy.serving.node.drain import (
    DrainTiming,
    default_drain_budget_s,
    exit_wait_deadline,
    sigterm_deadline,
    stop_reason,
)
from agentdeploy.serving.node.imds import ImdsClient
from agentdeploy.serving.node.notices import TerminationNotice, scale_in_notice
from agentdeploy.serving.node.stopper import VllmStopper
from agentdeploy.serving.node.vllm_client import Health, VllmClient

log = logging.getLogger("agentdeploy.node_agent")

Phase = Literal["serving", "draining", "stopping", "drained"]
LIFECYCLE_ATTEMPTS = 3
LIFECYCLE_RETRY_S = 5.0


@dataclass(frozen=True)
class AgentSettings:
    stack: str
    agent: str
    timing: DrainTiming
    notice_poll_s: float = 5.0
    health_poll_s: float = 2.0
    #: 0 turns demand publishing off. Publishing happens on multiples of the interval (on the
    #: minute), so each CloudWatch period holds exactly one datum per node.
    metrics_interval_s: float = 60.0
    #: How often vLLM's load is read between publishes (at most the publishing interval).
    demand_poll_s: float = 5.0
    drain_poll_s: float = 0.5
    #: Consecutive failed /health probes before the node reports itself unhealthy; a refused
    #: connection counts at once. One slow answer from a busy vLLM must not flap the node.
    unhealthy_after: int = 3
    #: Seconds a scale-in drain may take; None: the hook's heartbeat timeout less one poll.
    drain_budget_s: float | None = None

    @property
    def scale_in_budget_s(self) -> float:
        if self.drain_budget_s is not None:
            return self.drain_budget_s
        return default_drain_budget_s(self.timing.shutdown_timeout_s, self.notice_poll_s)


@dataclass
class NodeState:
    phase: Phase = "serving"
    vllm: Health = "down"
    instance_id: str | None = None
    notice: dict[str, str] | None = None
    rebalance_notice_time: str | None = None
    stop_reason: str | None = None
    #: The most requests seen still in flight while the drain waited before SIGTERM.
    waited_for_in_flight: int = 0
    deregistered_from: list[str] = field(default_factory=list)
    lifecycle_completed: bool = False
    metrics_published: int = 0
    errors: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Take traffic only while serving and vLLM answers /health."""
        return self.phase == "serving" and self.vllm == "ok"

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append({"event": kind, "at": time.time(), **fields})
        log.info("%s %s", kind, " ".join(f"{k}={v}" for k, v in fields.items()))

    def error(self, what: str, exc: BaseException) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        self.errors.append(message)
        log.error("%s", message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "phase": self.phase,
            "vllm": self.vllm,
            "instance_id": self.instance_id,
            "notice": self.notice,
            "rebalance_notice_time": self.rebalance_notice_time,
            "stop_reason": self.stop_reason,
            "waited_for_in_flight": self.waited_for_in_flight,
            "deregistered_from": self.deregistered_from,
            "lifecycle_completed": self.lifecycle_completed,
            "metrics_published": self.metrics_published,
            "errors": self.errors,
            "events": self.events,
        }


class NodeAgent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        imds: ImdsClient,
        vllm: VllmClient,
        stopper: VllmStopper | None,
        metrics: MetricsSink | None = None,
        deregistrar: TargetDeregistrar | None = None,
        lifecycle: LifecycleCompleter | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.state = NodeState()
        self._imds, self._vllm, self._stopper = imds, vllm, stopper
        self._metrics, self._deregistrar, self._lifecycle = metrics, deregistrar, lifecycle
        self._clock = clock
        self._drain_task: asyncio.Task[None] | None = None
        self._last_poll_error: str | None = None
        self._failed_probes = 0
        self._window = DemandWindow()
        self._last_datums: list[Datum] = []

    # ------------------------------------------------------------------ run
    async def run(self, stop: asyncio.Event) -> None:
        loops = [self._every(self.settings.notice_poll_s, self.check_notices, stop)]
        loops.append(self._every(self.settings.health_poll_s, self.check_health, stop))
        if self._metrics is not None and self.settings.metrics_interval_s > 0:
            poll_s = min(self.settings.demand_poll_s, self.settings.metrics_interval_s)
            loops.append(self._every(poll_s, self.read_demand, stop))
            loops.append(self._on_multiples(self.settings.metrics_interval_s, self.publish_demand, stop))
        tasks = [asyncio.create_task(c) for c in loops]
        try:
            await stop.wait()
        finally:
            for t in tasks + ([self._drain_task] if self._drain_task else []):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _every(self, interval_s: float, step: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            await step()
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass

    async def _on_multiples(self, interval_s: float, step: Callable[[float], Awaitable[None]],
                            stop: asyncio.Event) -> None:
        """Run `step(boundary)` at each multiple of the interval on the clock (12:05:00,
        12:06:00, ...), however late the timer wakes."""
        while not stop.is_set():
            now = self._clock()
            boundary = (now // interval_s + 1) * interval_s
            try:
                await asyncio.wait_for(stop.wait(), boundary - now)
                return
            except TimeoutError:
                await step(boundary)

    async def wait_drained(self) -> None:
        if self._drain_task is not None:
            await self._drain_task

    # ------------------------------------------------------------------ loops
    async def check_health(self) -> None:
        status = await self._vllm.health()
        if status == "unhealthy":
            self._failed_probes += 1
            if self._failed_probes < self.settings.unhealthy_after and self.state.vllm == "ok":
                return
        else:
            self._failed_probes = 0
        if status != self.state.vllm:
            self.state.event("vllm_health", status=status)
        self.state.vllm = status

    async def check_notices(self) -> None:
        try:
            notice: TerminationNotice | None = await self._imds.spot_notice()
            rebalance = await self._imds.rebalance_notice_time()
        except Exception as e:  # IMDS hiccups must never stop the loop; log each new error once
            self._poll_failed(e)
            return
        self._last_poll_error = None
        if rebalance and rebalance != self.state.rebalance_notice_time:
            self.state.rebalance_notice_time = rebalance
            self.state.event("rebalance_recommendation", notice_time=rebalance)
            await self._put([Datum(METRIC_REBALANCE, 1.0)])
        if notice is None and self._drain_task is None:
            # A spot notice wins when both are up: its deadline is EC2's, not ours. Read on its
            # own, so a failing target-state path never hides the notices above.
            try:
                target = await self._imds.target_lifecycle_state()
            except Exception as e:
                self._poll_failed(e)
                return
            notice = scale_in_notice(target, self._clock(), self.settings.scale_in_budget_s)
        if notice is not None and self._drain_task is None:
            self._drain_task = asyncio.create_task(self.drain(notice))

    def _poll_failed(self, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        if msg != self._last_poll_error:
            log.warning("IMDS poll failed: %s", msg)
        self._last_poll_error = msg

    async def read_demand(self) -> None:
        """One reading of vLLM's load into the current window; an unreadable vLLM adds nothing
        (unknown is not zero: never tell the autoscaler a dead node is idle)."""
        load = await self._vllm.load()
        if isinstance(load, str):
            return
        served = await self._vllm.server_load()
        data = demand_data(load.waiting, load.running, served if isinstance(served, int) else None)
        self._window.add(next(d.value for d in data if d.name == METRIC_DEMAND), load.finished)
        self._last_datums = [d for d in data if d.name != METRIC_DEMAND]

    async def publish_demand(self, period_end: float | None = None) -> None:
        """Close the window with one more reading and publish it, stamped with the period it
        covers (the minute before `period_end`, by default the clock's nearest boundary), so
        each CloudWatch period gets exactly one datum per node."""
        await self.read_demand()
        window, self._window = self._window, self._window.next()
        stats = window.statistics()
        if stats is None:
            return
        interval = self.settings.metrics_interval_s
        if period_end is None and interval > 0:
            period_end = round(self._clock() / interval) * interval
        period_start = None if period_end is None else period_end - interval
        data = [Datum(d.name, d.value, d.unit, at=period_start) for d in self._last_datums]
        data.append(Datum(METRIC_DEMAND, stats.maximum, stats=stats, at=period_start))
        if await self._put(data):
            self.state.metrics_published += 1

    async def _put(self, data: list[Datum]) -> bool:
        if self._metrics is None:
            return False
        try:
            await asyncio.to_thread(self._metrics.put, data)
            return True
        except Exception as e:
            self.state.error("publishing metrics", e)
            return False

    # ------------------------------------------------------------------ drain
    async def drain(self, notice: TerminationNotice) -> None:
        state, timing = self.state, self.settings.timing
        started = self._clock()
        state.phase = "draining"
        state.notice = notice.to_dict()
        state.event("spot_notice" if notice.kind == "spot" else "scale_in_notice", action=notice.action,
                    time=state.notice["time"], seconds_left=round(notice.deadline_epoch - started, 1))
        if notice.kind == "spot":  # the interruption count must not include our own scale-ins
            await self._put([Datum(METRIC_SPOT_INTERRUPTION, 1.0)])

        instance_id = await self._instance_id()
        if self._deregistrar is not None and instance_id:
            try:
                state.deregistered_from = await asyncio.to_thread(self._deregistrar.deregister, instance_id)
                state.event("deregistered", target_groups=",".join(state.deregistered_from))
            except Exception as e:
                state.error("deregistering from target groups", e)

        reason = None
        while reason is None:
            # A busy vLLM may answer slowly; never let one read run past the SIGTERM deadline.
            budget = max(0.1, sigterm_deadline(notice.deadline_epoch, timing) - self._clock())
            try:
                count: int | str = await asyncio.wait_for(self._vllm.in_flight(), budget)
            except TimeoutError:
                count = "unknown"
            if isinstance(count, int) and count > state.waited_for_in_flight:
                if state.waited_for_in_flight == 0:
                    state.event("waiting_for_in_flight", count=count)
                state.waited_for_in_flight = count
            reason = stop_reason(self._clock(), started, notice.deadline_epoch,
                                 None if isinstance(count, str) else count, timing,
                                 vllm_down=count == "down")
            if reason is None:
                await asyncio.sleep(self.settings.drain_poll_s)
        state.stop_reason = reason
        state.phase = "stopping"
        state.event("stopping_vllm", reason=reason, how=self._stopper.describe() if self._stopper else "none")
        if self._stopper is not None:
            try:
                await self._stopper.terminate()
                state.event("vllm_signalled")
            except Exception as e:
                state.error("stopping vLLM", e)

        deadline = exit_wait_deadline(self._clock(), notice.deadline_epoch, timing)
        while self._clock() < deadline and await self._vllm.health() != "down":
            await asyncio.sleep(self.settings.drain_poll_s)
        state.vllm = await self._vllm.health()
        state.event("vllm_stopped" if state.vllm == "down" else "vllm_stop_timeout", vllm=state.vllm)

        if self._lifecycle is not None and instance_id:
            await self._complete_lifecycle(instance_id, notice)
        state.phase = "drained"
        state.event("drained")

    async def _complete_lifecycle(self, instance_id: str, notice: TerminationNotice) -> None:
        """CONTINUE the terminating hook. The group may not have put the instance into
        Terminating:Wait yet when the drain is done (AWS then answers "No active Lifecycle
        Action"), so try again a few times while the notice lasts."""
        assert self._lifecycle is not None
        for attempt in range(LIFECYCLE_ATTEMPTS):
            try:
                await asyncio.to_thread(self._lifecycle.complete, instance_id)
                self.state.lifecycle_completed = True
                self.state.event("lifecycle_completed", instance_id=instance_id, attempt=attempt + 1)
                return
            except Exception as e:
                last_try = attempt + 1 == LIFECYCLE_ATTEMPTS
                if last_try or self._clock() + LIFECYCLE_RETRY_S >= notice.deadline_epoch:
                    self.state.error("completing the lifecycle action", e)
                    return
                log.warning("lifecycle action not completed yet (%s); retrying in %ss", e, LIFECYCLE_RETRY_S)
                await asyncio.sleep(LIFECYCLE_RETRY_S)

    async def _instance_id(self) -> str | None:
        if self.state.instance_id is None:
            try:
                self.state.instance_id = await self._imds.instance_id()
            except Exception as e:
                self.state.error("reading instance-id from IMDS", e)
        return self.state.instance_id
