"""Scale a stack's idle GPU fleets to zero: the file-backend answer to scheduled teardown.

Safe to run from cron. The decision (`decide`) is a pure function of what was read, so every
rule is unit-tested without AWS; `reap` reads, decides and acts. Rules, in order:

- only Auto Scaling groups tagged with this stack and role gpu-fleet are considered (re-checked
  before every write);
- a fleet already at desired 0 is left alone;
- a fleet whose MinSize is above 0 is kept: the plan keeps a warm floor there (an on-demand base
  replica), and overriding it would only last until the next `deploy up`;
- any demand above zero in the window keeps the fleet;
- a fleet up for less than the window is kept, datapoints or not: "up" counts from the later of
  the group's creation and its newest instance's launch, so a fleet that just scaled out from
  zero (its node agents not publishing yet, vLLM still loading) is never taken for idle;
- a running fleet with no demand datapoints in the window is kept: silence more likely means the
  node agents cannot publish (IAM, outage, wrong namespace) than that nobody called, unless the
  caller says `treat_missing_as_idle`;
- otherwise it is idle and its DesiredCapacity goes to 0 (MinSize is already 0, and `deploy up`
  ignores desired capacity, so it stays reaped);
- just before that write the group is read again: gone, untagged, scaled out or given a warm floor
  meanwhile means it is kept; so does a group deleted between that read and the write (AWS answers
  "AutoScalingGroup name not found"): there is nothing left to scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from agentdeploy.errors import DeployError, MissingDependency, OperationFailed, PartialChange
from agentdeploy.ops.aws import AwsClient
from agentdeploy.ops.fleets import Fleet, belongs_to, current_fleet, describe_instances, list_fleets
from agentdeploy.ops.metrics import Reading, demand_peak

Clock = Callable[[], datetime]
Action = Literal["scale-to-zero", "keep"]
#: What UpdateAutoScalingGroup answers (ValidationError) for a group that no longer exists.
GROUP_GONE = "AutoScalingGroup name not found"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReapVerdict:
    action: Action
    reason: str


@dataclass
class FleetReport:
    fleet: str
    agent: str | None
    action: Action
    reason: str
    desired_before: int
    min_before: int
    idle_minutes: int
    peak_demand: float | None
    datapoints: int
    up_since: str
    applied: bool = False
    error: str | None = None


def up_since(fleet: Fleet, launch_times: list[datetime]) -> datetime:
    return max([fleet.created, *launch_times])


def _running(fleet: Fleet) -> str:
    """'2 instance(s) run' (InService), else the desired count the group is working towards."""
    return f"{fleet.in_service} instance(s) run" if fleet.in_service else f"desired capacity is {fleet.desired}"


def decide(
    fleet: Fleet,
    demand: Reading,
    since: datetime,
    now: datetime,
    window: timedelta,
    treat_missing_as_idle: bool = False,
) -> ReapVerdict:
    """Whether to scale `fleet` to zero, and why (pure: everything it needs is passed in)."""
    minutes = int(window.total_seconds() // 60)
    if fleet.desired == 0:
        return ReapVerdict("keep", "already at zero")
    if fleet.min_size > 0:
        return ReapVerdict("keep", f"the plan keeps {fleet.min_size} replica(s) warm (MinSize {fleet.min_size})")
    if fleet.agent is None:
        return ReapVerdict("keep", "no agentdeploy:agent tag, so its demand metric cannot be read")
    if demand.value is not None and demand.value > 0:
        return ReapVerdict("keep", f"traffic in the last {minutes} min (peak demand {demand.value:g})")
    age = now - since
    if age < window:
        return ReapVerdict(
            "keep", f"up for {int(age.total_seconds() // 60)} min only, less than the {minutes} min idle window"
        )
    if demand.datapoints == 0:
        if not treat_missing_as_idle:
            return ReapVerdict(
                "keep",
                f"no demand data for {minutes} min while {_running(fleet)}: check the node agent's metrics "
                "publishing (or pass --treat-missing-as-idle)",
            )
        return ReapVerdict(
            "scale-to-zero", f"no demand datapoints in the last {minutes} min, treated as idle as asked"
        )
    return ReapVerdict("scale-to-zero", f"demand 0 over the last {minutes} min ({demand.datapoints} datapoints)")


def reap(
    autoscaling: AwsClient,
    ec2: AwsClient,
    cloudwatch: AwsClient,
    stack: str,
    idle_minutes: int | dict[str, int],
    dry_run: bool,
    clock: Clock = utcnow,
    treat_missing_as_idle: bool = False,
) -> list[FleetReport]:
    """Read, decide, act. `idle_minutes` may be per agent (the plan's fleet.idle_minutes).

    Raises PartialChange when some fleets were scaled and others failed; the reports say which.
    When none could be scaled it raises MissingDependency (exit 4) if AWS denied every write, as
    for any other denied call, and OperationFailed otherwise.
    """
    reports, error = reap_outcome(autoscaling, ec2, cloudwatch, stack, idle_minutes, dry_run, clock, treat_missing_as_idle)
    if error is not None:
        raise error
    return reports


def reap_outcome(
    autoscaling: AwsClient,
    ec2: AwsClient,
    cloudwatch: AwsClient,
    stack: str,
    idle_minutes: int | dict[str, int],
    dry_run: bool,
    clock: Clock = utcnow,
    treat_missing_as_idle: bool = False,
) -> tuple[list[FleetReport], DeployError | None]:
    """`reap`, with the per-fleet reports kept beside a failure of the writes (so `--json` can
    still say what happened to every fleet when the exit code is 1, 4 or 5)."""
    now = clock()
    reports: list[FleetReport] = []
    fleets = list_fleets(autoscaling, stack)
    instances = describe_instances(ec2, [i.instance_id for f in fleets for i in f.instances])
    for fleet in fleets:
        if isinstance(idle_minutes, dict):
            minutes = idle_minutes.get(fleet.agent or "", idle_minutes.get("", 15))
        else:
            minutes = idle_minutes
        window = timedelta(minutes=minutes)
        # An instance EC2 does not describe yet has just launched: count it as launched now.
        launches = [instances[i.instance_id]["LaunchTime"] if i.instance_id in instances else now for i in fleet.instances]
        since = up_since(fleet, launches)
        demand = (
            demand_peak(cloudwatch, stack, fleet.agent, now - window, now)
            if fleet.agent
            else Reading(None, 0, 0)
        )
        verdict = decide(fleet, demand, since, now, window, treat_missing_as_idle)
        reports.append(
            FleetReport(
                fleet=fleet.name,
                agent=fleet.agent,
                action=verdict.action,
                reason=verdict.reason,
                desired_before=fleet.desired,
                min_before=fleet.min_size,
                idle_minutes=minutes,
                peak_demand=demand.value,
                datapoints=demand.datapoints,
                up_since=since.astimezone(UTC).isoformat(),
            )
        )
    if dry_run:
        return reports, None
    errors: list[DeployError] = []
    for report, fleet in zip(reports, fleets, strict=True):
        if report.action != "scale-to-zero":
            continue
        try:
            # Read the group again just before writing: its tags must still say it is ours, and a
            # scale-out since the first read means demand arrived meanwhile.
            fresh = current_fleet(autoscaling, fleet.name)
            if fresh is None or not belongs_to(fresh.tags, stack):
                report.action, report.reason = "keep", "gone or lacks the stack's tags on a second read"
                continue
            if fresh.desired > fleet.desired:
                report.action, report.reason = "keep", f"scaled out to {fresh.desired} while reaping"
                continue
            if fresh.min_size > 0:
                report.action, report.reason = "keep", f"MinSize raised to {fresh.min_size} while reaping"
                continue
            # DesiredCapacity only: MinSize is the plan's, and it is already 0 here.
            autoscaling.call("update_auto_scaling_group", AutoScalingGroupName=fleet.name, DesiredCapacity=0)
            report.applied = True
        except DeployError as err:
            if GROUP_GONE in err.message:
                report.action, report.reason = "keep", "deleted while reaping (AWS: AutoScalingGroup name not found)"
                continue
            report.error = err.message
            errors.append(err)
    failed = len(errors)
    if failed:
        done = [r.fleet for r in reports if r.applied]
        details = [f"{r.fleet}: {r.error}" for r in reports if r.error] + [f"{f}: scaled to zero" for f in done]
        if not done:
            if all(isinstance(e, MissingDependency) for e in errors):
                return reports, MissingDependency(
                    f"could not scale {failed} idle fleet(s) to zero: {errors[0].message}",
                    details=details,
                    hint=errors[0].hint,
                )
            return reports, OperationFailed(f"could not scale {failed} idle fleet(s) to zero", details=details)
        return reports, PartialChange(
            f"scaled {len(done)} fleet(s) to zero, {failed} failed",
            details=details,
            hint="run `deploy reap` again; fleets already at zero are left alone",
        )
    return reports, None


def as_dicts(reports: list[FleetReport]) -> list[dict]:
    return [asdict(r) for r in reports]
