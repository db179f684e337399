"""`deploy cost` arithmetic, checked against figures computed by hand from list prices.

Prices used (catalog = list prices, per Mtok): Haiku 4.5 $1 in / $5 out, Sonnet 4.6 $3 / $15;
cache read 0.1x input, 5-min write 1.25x, 1-h write 2x; batch half price. g6.xlarge $0.8048/h
on-demand, $0.32/h spot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import boto3
import httpx
import pytest

from agentdeploy.naming import METRIC_SPEND_USD, ROLE_GPU_FLEET, stack_tags
from agentdeploy.ops.anthropic_admin import AdminClient, AdminRetry
from agentdeploy.ops.aws import AwsSession
from agentdeploy.ops.cost import (
    InstanceUsage,
    attribute_usage,
    billed_gap_warning,
    build_report,
    flags_for,
    gpu_spend,
    instance_hours,
    key_owners,
    price_usage,
)
from agentdeploy.ops.cost_sources import collect_report
from agentdeploy.planner import Plan, build_plan, load_catalog, load_decision_file

from . import cloud
from .admin_server import AdminServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "empty-home"))
    return load_catalog()


@pytest.fixture
def plan(catalog) -> Plan:
    """service-business's three Claude agents plus high-volume-router's GPU ticket-router, with
    the router's gateway (a stack with a GPU agent always runs one)."""
    sb = build_plan(load_decision_file(ROOT / "examples" / "service-business.yaml"), catalog)
    hv = build_plan(load_decision_file(ROOT / "examples" / "high-volume-router.yaml"), catalog)
    return sb.model_copy(update={"stack": "shop", "agents": sb.agents + [hv.agent("ticket-router")],
                                 "infrastructure": hv.infrastructure})


def _row(model: str, tier: str = "standard", key: str = "k", **tokens: int) -> SimpleNamespace:
    base = dict(uncached_input_tokens=0, cache_read_input_tokens=0, cache_write_5m_tokens=0, cache_write_1h_tokens=0,
                output_tokens=0, web_search_requests=0)
    base.update(tokens)
    return SimpleNamespace(model=model, service_tier=tier, api_key_id=key, **base)


def test_price_usage_by_hand(catalog) -> None:
    # 1M in $1 + 0.2M out $1 + 2M cache read $0.20 + 0.1M 5-min write $0.125 = $2.325
    row = _row("claude-haiku-4-5-20251001", uncached_input_tokens=1_000_000, output_tokens=200_000,
               cache_read_input_tokens=2_000_000, cache_write_5m_tokens=100_000)
    assert price_usage(row, catalog) == Decimal("2.325")
    # batch: (1M x $3 + 0.1M x $15) / 2 = $2.25; 1-h write 50k x $6 = $0.30 (not batch)
    assert price_usage(_row("claude-sonnet-4-6", "batch", uncached_input_tokens=1_000_000, output_tokens=100_000), catalog) == Decimal("2.25")
    assert price_usage(_row("claude-sonnet-4-6", cache_write_1h_tokens=50_000), catalog) == Decimal("0.3")
    assert price_usage(_row("claude-sonnet-4-6", web_search_requests=3), catalog) == Decimal("0.03")
    assert price_usage(_row("gpt-4o", uncached_input_tokens=5), catalog) is None


def test_attribution_by_key_name(catalog) -> None:
    keys = [SimpleNamespace(id="a1", name="shop/intake"), SimpleNamespace(id="a2", name="other/intake"),
            SimpleNamespace(id="a3", name="shop/unknown-agent")]
    owners = key_owners(keys, "shop", ["intake", "sales-brief"])
    assert owners == {"a1": "intake"}
    rows = [_row("claude-haiku-4-5", key="a1", uncached_input_tokens=1_000_000),
            _row("claude-haiku-4-5", key="a2", output_tokens=1_000_000),
            _row("mystery-model", key="a1", output_tokens=10)]
    spend = attribute_usage(rows, owners, catalog)
    assert spend.by_agent == {"intake": Decimal("1")}
    assert spend.org_priced == Decimal("6")
    assert spend.unpriced_models == {"mystery-model"}


def test_instance_hours_clip_to_the_period() -> None:
    since = datetime(2026, 11, 1, tzinfo=UTC)
    until = datetime(2026, 11, 2, tzinfo=UTC)
    tags = [{"Key": "agentdeploy:agent", "Value": "r"}]
    instances = [
        # started before the period, still running: 24 h
        {"InstanceId": "i-1", "LaunchTime": since - timedelta(hours=5), "State": {"Name": "running"}, "Tags": tags,
         "InstanceType": "g6.xlarge"},
        # spot, ran 06:00-09:30 GMT: 3.5 h
        {"InstanceId": "i-2", "LaunchTime": since + timedelta(hours=6), "State": {"Name": "terminated"},
         "StateTransitionReason": "User initiated (2026-11-01 09:30:00 GMT)", "InstanceLifecycle": "spot", "Tags": tags,
         "InstanceType": "g6.xlarge"},
        # stopped with no recorded time: not counted, and said so
        {"InstanceId": "i-3", "LaunchTime": since, "State": {"Name": "stopped"}, "Tags": tags, "InstanceType": "g6.xlarge"},
    ]
    usages, warnings = instance_hours(instances, since, until)
    assert [(u.instance_id, u.spot, u.hours) for u in usages] == [("i-1", False, 24.0), ("i-2", True, 3.5)]
    assert len(warnings) == 1
    assert "i-3" in warnings[0]


def test_gpu_spend_prices_spot_and_on_demand(catalog) -> None:
    usages = [InstanceUsage("i-1", "r", "g6.xlarge", False, 24.0, False), InstanceUsage("i-2", "r", "g6.xlarge", True, 3.5, True),
              InstanceUsage("i-9", "r", "x9.huge", False, 1.0, False)]
    spend, warnings = gpu_spend(usages, catalog)
    # 24 h x 0.8048 + 3.5 h x 0.32 = 19.3152 + 1.12 = 20.4352
    assert spend["r"].usd == pytest.approx(20.4352)
    assert (spend["r"].on_demand_hours, spend["r"].spot_hours) == (25.0, 3.5)
    assert "x9.huge" in warnings[0]


@pytest.mark.parametrize(
    ("actual", "projected", "budget", "share", "drift", "flags"),
    [
        (10.0, 10.0, 100.0, 0.5, 0.0, []),
        (13.0, 10.0, 100.0, 0.5, 0.3, ["over-projection"]),
        (7.0, 10.0, 100.0, 0.5, -0.3, ["under-projection"]),
        (60.0, 50.0, 100.0, 0.5, 0.2, ["over-budget-pace"]),
        (120.0, 100.0, 100.0, 1.0, 0.2, ["over-budget"]),
        (1.0, 0.0, 0.0, 0.5, None, ["over-projection"]),
    ],
)
def test_flags(actual, projected, budget, share, drift, flags) -> None:
    got_drift, got_flags = flags_for(actual, projected, budget, share, 0.25)
    assert got_flags == flags
    assert got_drift == (None if drift is None else pytest.approx(drift))


def test_billed_gap_warning() -> None:
    assert billed_gap_warning(Decimal("100"), Decimal("100.5")) is None
    assert "stale" in billed_gap_warning(Decimal("100"), Decimal("80"))


def test_report_prorates_projection_and_budget(plan: Plan, catalog) -> None:
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 11, 3, tzinfo=UTC)  # 10.125 days
    report = build_report(plan, catalog, "shop", since, until, {"intake": (3.325, "admin-api")}, {})
    intake = next(a for a in report.agents if a.agent == "intake")
    share = 10.125 / catalog.assumptions.days_per_month
    assert report.period_days == pytest.approx(10.125)
    assert intake.projected_usd == pytest.approx(plan.agent("intake").cost.monthly_usd.launch * share, abs=1e-6)
    assert intake.budget_used_pct == pytest.approx(100 * 3.325 / plan.agent("intake").budget.monthly_usd, abs=0.01)
    assert intake.drift_pct == pytest.approx(100 * (3.325 / intake.projected_usd - 1), abs=0.01)
    silent = next(a for a in report.agents if a.agent == "sales-brief")
    assert silent.claude_source == "none"
    assert silent.actual_usd == 0
    assert "under-projection" in silent.flags


def _setup_world(admin_api: AdminServer, real_now: datetime) -> None:
    keys = [{"id": "apikey_intake", "name": "shop/intake"}, {"id": "apikey_sales", "name": "shop/sales-brief"},
            {"id": "apikey_router", "name": "shop/ticket-router"}, {"id": "apikey_other", "name": "other/x"}]
    day = real_now.replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=5)
    at = lambda d: (day + timedelta(days=d)).isoformat()  # noqa: E731
    usage = [
        {"at": at(0), "api_key_id": "apikey_intake", "model": "claude-haiku-4-5-20251001", "uncached_input_tokens": 1_000_000,
         "output_tokens": 200_000, "cache_read_input_tokens": 2_000_000, "cache_creation_5m": 100_000},        # 2.325
        {"at": at(2), "api_key_id": "apikey_intake", "model": "claude-haiku-4-5-20251001", "uncached_input_tokens": 500_000,
         "output_tokens": 100_000},                                                                            # 1.000
        {"at": at(1), "api_key_id": "apikey_sales", "model": "claude-sonnet-4-6", "uncached_input_tokens": 2_000_000,
         "output_tokens": 400_000, "cache_creation_1h": 50_000},                                               # 12.30
        {"at": at(3), "api_key_id": "apikey_sales", "model": "claude-sonnet-4-6", "service_tier": "batch",
         "uncached_input_tokens": 1_000_000, "output_tokens": 100_000},                                        # 2.25
        {"at": at(4), "api_key_id": "apikey_router", "model": "claude-haiku-4-5", "uncached_input_tokens": 100_000},  # 0.10
        {"at": at(4), "api_key_id": "apikey_other", "model": "claude-haiku-4-5", "uncached_input_tokens": 3_000_000},  # 3.00
        {"at": (day - timedelta(days=30)).isoformat(), "api_key_id": "apikey_intake", "model": "claude-haiku-4-5",
         "output_tokens": 10_000_000},                                                                         # before --since
    ]
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=keys).raise_for_status()
    httpx.post(f"{admin_api.url}/_emulator/usage", json=usage).raise_for_status()


def _gpu_instances(stack: str, agent: str) -> None:
    ec2 = boto3.client("ec2")
    tags = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in stack_tags(stack, agent, ROLE_GPU_FLEET).items()]}]
    ec2.run_instances(ImageId="ami-12c6146b", InstanceType="g6.xlarge", MinCount=1, MaxCount=1, TagSpecifications=tags)
    ec2.run_instances(ImageId="ami-12c6146b", InstanceType="g6.xlarge", MinCount=1, MaxCount=1, TagSpecifications=tags,
                      InstanceMarketOptions={"MarketType": "spot"})
    gone = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="g6.xlarge", MinCount=1, MaxCount=1,
                             TagSpecifications=tags, InstanceMarketOptions={"MarketType": "spot"})
    ec2.terminate_instances(InstanceIds=[gone["Instances"][0]["InstanceId"]])
    # Another stack's instance and an untagged one must not be counted.
    other = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in stack_tags("other", agent, ROLE_GPU_FLEET).items()]}]
    ec2.run_instances(ImageId="ami-12c6146b", InstanceType="p5.4xlarge", MinCount=1, MaxCount=1, TagSpecifications=other)
    ec2.run_instances(ImageId="ami-12c6146b", InstanceType="p5.4xlarge", MinCount=1, MaxCount=1)


def test_cost_end_to_end_against_emulator_and_moto(aws, admin_api: AdminServer, plan: Plan, catalog) -> None:
    real_now = datetime.now(UTC)
    _setup_world(admin_api, real_now)
    _gpu_instances("shop", "ticket-router")
    until = real_now + timedelta(hours=10)
    since = (real_now - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    cloud.put_metric(METRIC_SPEND_USD, "shop", "marketing-drafts", 0.40, real_now - timedelta(days=2))
    cloud.put_metric(METRIC_SPEND_USD, "shop", "marketing-drafts", 0.35, real_now - timedelta(days=1), {"Replica": "gw-2"})

    session = AwsSession()
    admin = AdminClient(api_key=admin_api.key, base_url=admin_api.url, retry=AdminRetry(sleep=lambda s: None))
    with admin:
        report = collect_report(plan, catalog, "shop", since, until, session.client("ec2"), session.client("cloudwatch"),
                                admin, threshold=0.25)
    by = {a.agent: a for a in report.agents}
    assert (by["intake"].claude_usd, by["intake"].claude_source) == (pytest.approx(3.325), "admin-api")
    assert by["sales-brief"].claude_usd == pytest.approx(14.55)
    assert (by["marketing-drafts"].claude_usd, by["marketing-drafts"].claude_source) == (pytest.approx(0.75), "gateway-metric")
    router = by["ticket-router"]
    # 10 h on-demand x 0.8048 + 10 h spot x 0.32, the terminated spot instance ran ~0 h
    assert router.gpu_on_demand_hours == pytest.approx(10.0, abs=0.01)
    assert router.gpu_spot_hours == pytest.approx(10.0, abs=0.01)
    assert router.gpu_usd == pytest.approx(8.048 + 3.2, abs=0.02)
    assert router.claude_usd == pytest.approx(0.10)
    assert router.actual_usd == pytest.approx(router.gpu_usd + 0.10)
    # Billed total (emulator's own prices, in cents) = catalog-priced usage of every key: no staleness warning.
    assert report.claude_billed_usd == pytest.approx(3.325 + 14.55 + 0.10 + 3.0)
    assert report.claude_org_priced_usd == pytest.approx(report.claude_billed_usd)
    assert not any("stale" in w for w in report.warnings)
    assert report.actual_usd == pytest.approx(sum(a.actual_usd for a in report.agents))
    share = report.period_days / catalog.assumptions.days_per_month
    assert by["sales-brief"].projected_usd == pytest.approx(plan.agent("sales-brief").cost.monthly_usd.launch * share, abs=1e-3)
