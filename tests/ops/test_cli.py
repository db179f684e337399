"""`deploy reap / cost / status` end to end: the real `deploy` entry point against moto + emulators.

Error paths run the console script in a subprocess, so what is checked is what a user sees:
the message, the exit code, and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import boto3
import httpx
import pytest
from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.errors import OperationFailed
from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_DEMAND, METRIC_NAMESPACE, stack_tags
from agentdeploy.ops.aws import AwsClient
from agentdeploy.planner import build_plan, load_catalog, load_decision_file
from tests.ops.cloud import loopback_http

from . import cloud
from .admin_server import ADMIN_KEY, AdminServer
from .deploy_cli import DEPLOY, assert_clean_error, deploy


def test_reap_uses_the_plan_window_and_keeps_a_young_fleet(aws, project: Path) -> None:
    cloud.fleet("router-tr", "router", "ticket-router", desired=1)
    proc = deploy("reap", "--stack", "router", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    plan = build_plan(load_decision_file(project / "router.yaml"), load_catalog())
    (fleet,) = doc["fleets"]
    assert fleet["idle_minutes"] == plan.agent("ticket-router").fleet.idle_minutes
    assert fleet["action"] == "keep"
    assert "idle window" in fleet["reason"]
    assert doc["dry_run"] is True
    assert cloud.group("router-tr")["DesiredCapacity"] == 1


def test_reap_table_output(aws, project: Path) -> None:
    cloud.fleet("router-tr", "router", "ticket-router", desired=1)
    result = CliRunner().invoke(cli, ["reap", "--stack", "router", "--idle-minutes", "30"])
    assert result.exit_code == 0, result.output
    assert "router-tr" in result.output
    assert "keep" in result.output
    assert "30 min" in result.output


def test_reap_unknown_stack(aws, project: Path) -> None:
    assert_clean_error(deploy("reap", "--stack", "nosuch"), 2, "stack 'nosuch' not found")


def test_reap_stack_known_by_tags_alone_needs_no_project(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From cron on a box without the checkout: the tags are enough."""
    monkeypatch.delenv("AGENTDEPLOY_PROJECT", raising=False)
    cloud.fleet("far-away", "remote", "r", desired=1)
    proc = subprocess.run([DEPLOY, "reap", "--stack", "remote", "--json"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fleets"][0]["idle_minutes"] == 15


def test_reap_without_credentials(aws, project: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc = subprocess.run([DEPLOY, "reap", "--stack", "router"], capture_output=True, text=True, timeout=120, env=env)
    assert_clean_error(proc, 4, "no AWS credentials found")


def test_reap_access_denied(aws, project: Path) -> None:
    """A real AccessDenied from moto enforcing IAM: exit 4, the permission named, no traceback."""
    cloud.fleet("router-tr", "router", "ticket-router", desired=1)
    with cloud.identity_denied(aws.url, "autoscaling:DescribeAutoScalingGroups") as env:
        proc = deploy("reap", "--stack", "router", env=env)
        as_json = deploy("reap", "--stack", "router", "--json", env=env)
    assert_clean_error(proc, 4, "error: AWS denied autoscaling:DescribeAutoScalingGroups (AccessDenied)")
    assert "hint: grant autoscaling:DescribeAutoScalingGroups" in proc.stderr
    assert as_json.returncode == 4
    assert "Traceback" not in as_json.stderr
    doc = json.loads(as_json.stdout)
    assert (doc["error"], doc["exit_code"]) == ("MissingDependency", 4)
    assert cloud.group("router-tr")["DesiredCapacity"] == 1


def test_reap_treat_missing_as_idle_flag(aws, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flag travels from the command line to the decision (the clock moved past the window)."""
    from agentdeploy.ops import commands, reaper

    later = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr(commands, "reap_outcome", lambda *a, **kw: reaper.reap_outcome(*a, **{**kw, "clock": lambda: later}))
    cloud.fleet("router-tr", "router", "ticket-router", desired=1)
    kept = CliRunner().invoke(cli, ["reap", "--stack", "router", "--json"])
    assert kept.exit_code == 0, kept.output
    (fleet,) = json.loads(kept.output)["fleets"]
    assert fleet["action"] == "keep"
    assert "no demand data" in fleet["reason"]
    assert "--treat-missing-as-idle" in fleet["reason"]
    assert cloud.group("router-tr")["DesiredCapacity"] == 1
    reaped = CliRunner().invoke(cli, ["reap", "--stack", "router", "--json", "--treat-missing-as-idle"])
    assert reaped.exit_code == 0, reaped.output
    doc = json.loads(reaped.output)
    assert doc["treat_missing_as_idle"] is True
    assert doc["fleets"][0]["applied"] is True
    assert cloud.group("router-tr")["DesiredCapacity"] == 0


def test_refresh_spot_access_denied(aws, project: Path, tmp_path: Path) -> None:
    with cloud.identity_denied(aws.url, "ec2:DescribeSpotPriceHistory") as env:
        proc = deploy("catalog", "refresh-spot", "--region", "us-east-1", env=env)
    assert_clean_error(proc, 4, "error: AWS denied ec2:DescribeSpotPriceHistory (AccessDenied)")
    assert "hint: grant ec2:DescribeSpotPriceHistory" in proc.stderr
    assert not (tmp_path / "home" / "catalog.d").exists()


def _admin_world(admin_api: AdminServer) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=[{"id": "k-intake", "name": "shop/intake"}]).raise_for_status()
    httpx.post(f"{admin_api.url}/_emulator/usage", json=[
        {"at": day.isoformat(), "api_key_id": "k-intake", "model": "claude-haiku-4-5-20251001",
         "uncached_input_tokens": 2_000_000, "output_tokens": 100_000},  # $2 + $0.50
    ]).raise_for_status()


def test_cost_json_never_shows_the_admin_key(aws, project: Path, admin_api: AdminServer) -> None:
    _admin_world(admin_api)
    env = {"ANTHROPIC_ADMIN_KEY": ADMIN_KEY, "ANTHROPIC_ADMIN_BASE_URL": admin_api.url}
    proc = deploy("cost", "--stack", "shop", "--json", "--drift", "10", env=env)
    assert proc.returncode == 0, proc.stderr
    assert ADMIN_KEY not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    intake = next(a for a in doc["agents"] if a["agent"] == "intake")
    assert intake["claude_usd"] == pytest.approx(2.5)
    assert intake["claude_source"] == "admin-api"
    assert doc["claude_billed_usd"] == pytest.approx(2.5)
    assert doc["drift_threshold_pct"] == 10
    assert any("shop/sales-brief" in w for w in doc["warnings"])  # no key for that agent: said so


def test_cost_table_and_chart(aws, project: Path, admin_api: AdminServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _admin_world(admin_api)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
    chart = tmp_path / "cost.png"
    result = CliRunner().invoke(cli, ["cost", "--stack", "shop", "--admin-url", admin_api.url, "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert "intake" in result.output
    assert "$2.50" in result.output
    assert ADMIN_KEY not in result.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_errors(aws, project: Path) -> None:
    assert_clean_error(deploy("cost", "--stack", "shop", "--claude-source", "admin"), 4, "ANTHROPIC_ADMIN_KEY is not set")
    assert_clean_error(deploy("cost", "--stack", "shop", "--since", "last tuesday"), 2, "is not a date")
    assert_clean_error(deploy("cost", "--stack", "ghost"), 2, "stack 'ghost' does not exist")
    assert_clean_error(deploy("cost", "--stack", "shop", "--since", "2030-01-01"), 2, "is not before")


def test_cost_from_gateway_metric_only(aws, gateway_shop: Path) -> None:
    cloud.put_metric("SpendUSD", "shop", "intake", 1.25, datetime.now(UTC) - timedelta(minutes=5))
    proc = deploy("cost", "--stack", "shop", "--json", "--since", (datetime.now(UTC) - timedelta(days=1)).date().isoformat())
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    intake = next(a for a in doc["agents"] if a["agent"] == "intake")
    assert (intake["claude_usd"], intake["claude_source"]) == (1.25, "gateway-metric")
    assert "ANTHROPIC_ADMIN_KEY not set" in doc["warnings"][0]


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        body = b'{"ready": true}' if self.path == "/readyz" else b"{}"
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def gateway():
    with loopback_http(_Ready) as url:
        yield url


def _alarm(name: str, stack: str, agent: str | None, state: str = "ALARM", by_tag: bool = False) -> None:
    cw = boto3.client("cloudwatch")
    dims = [] if by_tag else [{"Name": DIM_STACK, "Value": stack}] + ([{"Name": DIM_AGENT, "Value": agent}] if agent else [])
    tags = [{"Key": k, "Value": v} for k, v in stack_tags(stack, agent).items()] if by_tag else []
    cw.put_metric_alarm(AlarmName=name, Namespace=METRIC_NAMESPACE, MetricName=METRIC_DEMAND, Statistic="Maximum", Period=60,
                        EvaluationPeriods=1, Threshold=10, ComparisonOperator="GreaterThanThreshold", Dimensions=dims, Tags=tags)
    cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"test {state}")


def test_status_json(aws, project: Path, gateway: str) -> None:
    cloud.fleet("router-tr", "router", "ticket-router", desired=2, instance_type="g6.xlarge")
    _alarm("router-tr-queue", "router", "ticket-router")
    _alarm("router-budget", "router", None, by_tag=True)
    _alarm("router-quiet", "router", "ticket-router", state="OK")
    _alarm("shop-queue", "shop", "intake")
    proc = deploy("status", "--stack", "router", "--json", "--gateway-url", gateway)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by = {a["agent"]: a for a in doc["agents"]}
    fleet = by["ticket-router"]["fleet"]
    assert (fleet["desired"], fleet["healthy"], fleet["on_demand"], fleet["spot"]) == (2, 2, 2, 0)
    assert fleet["instance_types"] == ["g6.xlarge"]
    assert by["ticket-router"]["route"] == "gpu"
    assert by["ticket-router"]["alarms"] == ["router-tr-queue"]
    assert by["answer-drafts"]["fleet"] is None and by["answer-drafts"]["route"] == "api"  # on the API until its switch point
    assert sorted(a["name"] for a in doc["alarms"]) == ["router-budget", "router-tr-queue"]
    assert doc["gateway"]["ready"] is True and doc["healthy"] is False  # alarms are firing
    # Month-to-date GPU spend of the two on-demand instances counts against the budget.
    assert by["ticket-router"]["spent_month_usd"] is not None


def test_status_table_with_unreachable_gateway(aws, project: Path) -> None:
    from tests.support.moto import free_port

    result = CliRunner().invoke(cli, ["status", "--stack", "shop", "--gateway-url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 0, result.output
    assert "NOT READY" in result.output
    assert "not healthy" in result.output
    assert "intake" in result.output


def test_status_unknown_stack(aws, project: Path) -> None:
    assert_clean_error(deploy("status", "--stack", "nosuch"), 2, "does not exist")


def test_status_from_a_plan_json(aws, project: Path, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    proc = deploy("plan", str(project / "router.yaml"), "--json")
    assert proc.returncode == 0, proc.stderr
    plan_file.write_text(proc.stdout)
    cloud.fleet("elsewhere-tr", "elsewhere", "ticket-router", desired=1)
    # No stacks/Pulumi.elsewhere.yaml: the plan JSON stands in for the decision file.
    proc = deploy("status", "--stack", "elsewhere", "--plan", str(plan_file), "--json")
    assert proc.returncode == 0, proc.stderr
    by = {a["agent"]: a for a in json.loads(proc.stdout)["agents"]}
    assert by["ticket-router"]["fleet"]["name"] == "elsewhere-tr"
    plan_file.write_text('{"stack": "x"}')
    assert_clean_error(deploy("status", "--stack", "elsewhere", "--plan", str(plan_file)), 2, "not a plan")


def test_cost_gpu_from_cost_explorer(aws, project: Path) -> None:
    canned = {"results": [{"ResultsByTime": [{
        "TimePeriod": {"Start": "2026-11-01", "End": "2026-11-24"},
        "Total": {},
        "Groups": [
            {"Keys": ["agentdeploy:agent$ticket-router"], "Metrics": {"UnblendedCost": {"Amount": "12.3456", "Unit": "USD"}}},
            {"Keys": ["agentdeploy:agent$"], "Metrics": {"UnblendedCost": {"Amount": "0.50", "Unit": "USD"}}},
        ],
        "Estimated": True,
    }]}]}
    httpx.post(f"{aws.url}/moto-api/static/ce/cost-and-usage-results", json=canned).raise_for_status()
    proc = deploy("cost", "--stack", "router", "--gpu-source", "cost-explorer", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by = {a["agent"]: a for a in doc["agents"]}
    assert by["ticket-router"]["gpu_usd"] == pytest.approx(12.3456)
    assert by["answer-drafts"]["gpu_usd"] == 0
    assert any("(untagged)" in w for w in doc["warnings"])  # spend without an agent tag is reported, not lost


def test_usage_errors_are_json_under_json(aws, project: Path) -> None:
    """A bad option value is click's usage error: with --json it is still one JSON document on stdout."""
    proc = deploy("reap", "--stack", "router", "--idle-minutes", "0", "--json")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["error"], doc["exit_code"]) == ("UsageError", 2)
    assert "--idle-minutes" in doc["message"]
    missing = deploy("status", "--json")  # --stack is required
    assert missing.returncode == 2
    assert "--stack" in json.loads(missing.stdout)["message"]


class _Updates(AwsClient):
    """The autoscaling client with a hook just before each UpdateAutoScalingGroup."""

    def __init__(self, inner: AwsClient, before_update):
        super().__init__(inner.raw)
        self.before_update = before_update

    def call(self, method: str, **kwargs):
        if method == "update_auto_scaling_group":
            self.before_update(kwargs["AutoScalingGroupName"])
        return super().call(method, **kwargs)


def _reap_later_with(monkeypatch: pytest.MonkeyPatch, before_update) -> None:
    """`deploy reap` two hours on (every fleet past its window), its writes going through `_Updates`."""
    from agentdeploy.ops import commands, reaper

    later = datetime.now(UTC) + timedelta(hours=2)

    def outcome(asg, *a, **kw):
        return reaper.reap_outcome(_Updates(asg, before_update), *a, **{**kw, "clock": lambda: later})

    monkeypatch.setattr(commands, "reap_outcome", outcome)


def test_partial_reap_json_keeps_every_fleets_report(aws, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.fleet("router-a", "router", "ticket-router", desired=1)
    cloud.fleet("router-b", "router", "other", desired=1)

    def deny_b(name: str) -> None:
        if name == "router-b":
            raise OperationFailed("AWS autoscaling:UpdateAutoScalingGroup failed: ScalingActivityInProgress")

    _reap_later_with(monkeypatch, deny_b)
    result = CliRunner().invoke(cli, ["reap", "--stack", "router", "--json", "--treat-missing-as-idle"])
    assert result.exit_code == 5
    doc = json.loads(result.stdout)
    by = {f["fleet"]: f for f in doc["fleets"]}
    assert by["router-a"]["applied"] is True
    assert by["router-a"]["error"] is None
    assert by["router-b"]["applied"] is False
    assert "ScalingActivityInProgress" in by["router-b"]["error"]
    assert (doc["error"]["error"], doc["error"]["exit_code"]) == ("PartialChange", 5)
    assert cloud.group("router-a")["DesiredCapacity"] == 0
    assert cloud.group("router-b")["DesiredCapacity"] == 1


def test_a_group_deleted_just_before_the_write_is_kept(aws, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's "AutoScalingGroup name not found" on the update means there is nothing left to scale: kept, exit 0."""
    cloud.fleet("router-tr", "router", "ticket-router", desired=1)

    def delete(name: str) -> None:
        boto3.client("autoscaling").delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)

    _reap_later_with(monkeypatch, delete)
    result = CliRunner().invoke(cli, ["reap", "--stack", "router", "--json", "--treat-missing-as-idle"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (fleet,) = doc["fleets"]
    assert (fleet["action"], fleet["applied"], fleet["error"]) == ("keep", False, None)
    assert "AutoScalingGroup name not found" in fleet["reason"]
    assert doc["error"] is None
