"""The node agent's command line, run on each GPU instance as

    python -m agentdeploy.serving.node --stack S --agent A [options]

Every option also reads an environment variable, AGENTDEPLOY_<OPTION> (the systemd unit loads
/etc/agentdeploy/node.env), so the unit's command line stays fixed. See agent.py for what it does.
Bad configuration exits 2 with a message naming the option; it never shows a traceback.
The parts that need aiohttp or boto3 are imported only once the arguments are good, so a bad
command line or a missing dependency is reported cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.naming import METRIC_NAMESPACE, NODE_HEALTH_PORT, VLLM_PORT

if TYPE_CHECKING:
    from agentdeploy.serving.node.cloud import AsgLifecycleCompleter, CloudWatchSink, ElbTargetDeregistrar
    from agentdeploy.serving.node.imds import ImdsClient

DEFAULT_LIFECYCLE_HOOK = "drain"

log = logging.getLogger("agentdeploy.node_agent")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def e(name: str, default: str | None = None) -> str | None:
        return env.get(name) or default

    vllm_port = e("AGENTDEPLOY_VLLM_PORT", str(VLLM_PORT))
    p = argparse.ArgumentParser(
        prog="python -m agentdeploy.serving.node",
        description="Spot-notice and scale-in drain, health endpoint and demand metrics for a vLLM node.",
    )
    p.add_argument("--stack", default=e("AGENTDEPLOY_STACK"), help="stack name (env AGENTDEPLOY_STACK)")
    p.add_argument("--agent", default=e("AGENTDEPLOY_AGENT"), help="agent name (env AGENTDEPLOY_AGENT)")
    p.add_argument("--vllm-url", default=e("AGENTDEPLOY_VLLM_URL", f"http://127.0.0.1:{vllm_port}"),
                   help="local vLLM server (env AGENTDEPLOY_VLLM_URL, or port from AGENTDEPLOY_VLLM_PORT)")
    p.add_argument("--health-host", default=e("AGENTDEPLOY_HEALTH_HOST", "0.0.0.0"))
    p.add_argument("--health-port", type=int, default=e("AGENTDEPLOY_HEALTH_PORT", str(NODE_HEALTH_PORT)))
    p.add_argument("--imds-url", default=e("AGENTDEPLOY_IMDS_URL", "http://169.254.169.254"),
                   help="instance metadata base URL (tests point it at the emulator)")
    p.add_argument("--notice-poll-s", type=float, default=e("AGENTDEPLOY_NOTICE_POLL_S", "5"),
                   help="IMDS poll interval; AWS recommends 5 s")
    p.add_argument("--health-poll-s", type=float, default=e("AGENTDEPLOY_HEALTH_POLL_S", "2"))
    p.add_argument("--metrics-interval-s", type=float, default=e("AGENTDEPLOY_METRICS_INTERVAL_S", "60"),
                   help="demand publishing interval, on its multiples (on the minute); 0 turns it off")
    p.add_argument("--demand-poll-s", type=float, default=e("AGENTDEPLOY_DEMAND_POLL_S", "5"),
                   help="how often vLLM's load is read between publishes (the interval's peak is published)")
    p.add_argument("--metric-namespace", default=e("AGENTDEPLOY_METRIC_NAMESPACE", METRIC_NAMESPACE))
    p.add_argument("--shutdown-timeout-s", type=float, default=e("AGENTDEPLOY_SHUTDOWN_TIMEOUT_S", "90"),
                   help="vLLM's --shutdown-timeout (how long its drain may take)")
    p.add_argument("--drain-margin-s", type=float, default=e("AGENTDEPLOY_DRAIN_MARGIN_S", "10"))
    p.add_argument("--drain-settle-s", type=float, default=e("AGENTDEPLOY_DRAIN_SETTLE_S", "5"))
    p.add_argument("--drain-budget-s", type=float, default=e("AGENTDEPLOY_DRAIN_BUDGET_S"),
                   help="how long a scale-in drain (target lifecycle state Terminated) may take; default:"
                        " the lifecycle hook's heartbeat timeout (shutdown timeout + 30 s) less one notice poll")
    p.add_argument("--drain-poll-s", type=float, default=e("AGENTDEPLOY_DRAIN_POLL_S", "0.5"))
    p.add_argument("--target-group-arn", action="append",
                   default=[a for a in (e("AGENTDEPLOY_TARGET_GROUP_ARNS", "") or "").split(",") if a],
                   help="repeatable (env AGENTDEPLOY_TARGET_GROUP_ARNS, comma-separated);"
                        " default: the Auto Scaling group's target groups")
    p.add_argument("--asg-name", default=e("AGENTDEPLOY_ASG_NAME"),
                   help="Auto Scaling group (default: from the instance's aws:autoscaling:groupName tag)")
    p.add_argument("--lifecycle-hook", default=e("AGENTDEPLOY_LIFECYCLE_HOOK", DEFAULT_LIFECYCLE_HOOK))
    p.add_argument("--no-aws", action="store_true", default=e("AGENTDEPLOY_NO_AWS") == "1",
                   help="no CloudWatch, deregistration or lifecycle calls (local runs)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--vllm-pid", type=int, default=None)
    stop.add_argument("--vllm-pidfile", type=Path, default=None)
    stop.add_argument("--vllm-stop-command", default=e("AGENTDEPLOY_VLLM_STOP_COMMAND"),
                      help="default: systemctl stop --no-block vllm.service (unit needs KillMode=mixed)")
    p.add_argument("--region", default=e("AWS_REGION") or e("AWS_DEFAULT_REGION"))
    p.add_argument("--log-level", default=e("AGENTDEPLOY_LOG_LEVEL", "INFO"))
    return p


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> argparse.Namespace:
    parser = build_parser(env)
    # Environment defaults are strings: argparse converts them with the option's type, so a
    # bad value in node.env is reported under the option's name like one on the command line.
    args = parser.parse_args(list(argv))
    problems = []
    if not args.stack:
        problems.append("--stack (or AGENTDEPLOY_STACK) is required")
    if not args.agent:
        problems.append("--agent (or AGENTDEPLOY_AGENT) is required")
    for name in ("notice_poll_s", "health_poll_s", "drain_poll_s", "demand_poll_s"):
        if getattr(args, name) <= 0:
            problems.append(f"--{name.replace('_', '-')} must be > 0")
    if args.metrics_interval_s < 0 or args.shutdown_timeout_s < 0:
        problems.append("--metrics-interval-s and --shutdown-timeout-s must be >= 0")
    if args.drain_budget_s is not None and args.drain_budget_s <= 0:
        problems.append("--drain-budget-s must be > 0")
    if not 0 < args.health_port < 65536:
        problems.append("--health-port must be a TCP port")
    if problems:
        parser.error("; ".join(problems))
    return args


async def run(args: argparse.Namespace, stop: asyncio.Event | None = None) -> None:
    import aiohttp

    from agentdeploy.serving.node.agent import AgentSettings, NodeAgent
    from agentdeploy.serving.node.drain import DrainTiming
    from agentdeploy.serving.node.health import start_health_server
    from agentdeploy.serving.node.imds import ImdsClient
    from agentdeploy.serving.node.stopper import CommandStopper, PidStopper, VllmStopper
    from agentdeploy.serving.node.vllm_client import VllmClient

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    stopper: VllmStopper
    if args.vllm_pid or args.vllm_pidfile:
        stopper = PidStopper(pid=args.vllm_pid, pidfile=args.vllm_pidfile)
    else:
        stopper = CommandStopper(args.vllm_stop_command) if args.vllm_stop_command else CommandStopper()

    settings = AgentSettings(
        stack=args.stack,
        agent=args.agent,
        timing=DrainTiming(args.shutdown_timeout_s, args.drain_margin_s, args.drain_settle_s),
        notice_poll_s=args.notice_poll_s,
        health_poll_s=args.health_poll_s,
        metrics_interval_s=args.metrics_interval_s,
        demand_poll_s=args.demand_poll_s,
        drain_poll_s=args.drain_poll_s,
        drain_budget_s=args.drain_budget_s,
    )
    async with aiohttp.ClientSession() as session:
        imds = ImdsClient(session, args.imds_url)
        metrics: CloudWatchSink | None = None
        deregistrar: ElbTargetDeregistrar | None = None
        lifecycle: AsgLifecycleCompleter | None = None
        if not args.no_aws:
            metrics, deregistrar, lifecycle = await _aws_parts(args, imds)
        agent = NodeAgent(settings, imds=imds, vllm=VllmClient(session, args.vllm_url), stopper=stopper,
                          metrics=metrics, deregistrar=deregistrar, lifecycle=lifecycle)
        runner = await start_health_server(agent.state, args.health_host, args.health_port)
        agent.state.event("started", health=f"{args.health_host}:{args.health_port}", vllm=args.vllm_url,
                          stop=stopper.describe())
        try:
            await agent.run(stop)
        finally:
            await runner.cleanup()


async def _aws_parts(
    args: argparse.Namespace, imds: ImdsClient,
) -> tuple[CloudWatchSink, ElbTargetDeregistrar | None, AsgLifecycleCompleter | None]:
    """CloudWatch always; deregistration and the lifecycle hook when the group is known."""
    from agentdeploy.serving.node.cloud import (
        AsgLifecycleCompleter,
        CloudWatchSink,
        ElbTargetDeregistrar,
        discover_target_groups,
    )

    metrics = CloudWatchSink(args.stack, args.agent, namespace=args.metric_namespace, region=args.region)
    group = args.asg_name
    if not group:
        try:
            group = await imds.autoscaling_group()
        except Exception as exc:  # tags in metadata are optional
            log.warning("could not read the Auto Scaling group from IMDS tags: %s", exc)
    arns = list(args.target_group_arn)
    if not arns and group:
        try:
            arns = await asyncio.to_thread(discover_target_groups, group, region=args.region)
        except Exception as exc:
            log.warning("could not list target groups of %s: %s", group, exc)
    deregistrar = ElbTargetDeregistrar(arns, region=args.region) if arns else None
    lifecycle = AsgLifecycleCompleter(group, args.lifecycle_hook, region=args.region) if group else None
    if deregistrar is None:
        log.warning("no target group known: the node will not deregister itself before termination")
    if lifecycle is None:
        log.warning("no Auto Scaling group known: no lifecycle action will be completed")
    return metrics, deregistrar, lifecycle


def main(argv: Sequence[str] | None = None) -> int:
    import importlib.util

    from agentdeploy.errors import EXIT_MISSING

    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    missing = [m for m in ("aiohttp",) + (() if args.no_aws else ("boto3",)) if importlib.util.find_spec(m) is None]
    if missing:
        print(f"error: the node agent needs {', '.join(missing)}: install agentdeploy[serving,cloud]"
              " (or run with --no-aws where no AWS calls are wanted)", file=sys.stderr)
        return EXIT_MISSING
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(run(args))
    except OSError as exc:  # e.g. the health port is taken
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0

