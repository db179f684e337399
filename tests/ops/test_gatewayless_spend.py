"""`deploy status` and `deploy cost` read a gateway-less stack's Claude spend where `deploy spend
publish` writes it (SpendUSDDay, each UTC day's Maximum) and a gateway stack's where the gateway
writes it (SpendUSD, summed), in moto's CloudWatch. The datapoints are written by spend_publish's
own writer, as the scheduled job writes them; the other kind's metric is always there too, so
reading the wrong one fails.

`shop` is the service business, which the planner leaves without a gateway; `gateway_shop` pins
the gateway in. Hand arithmetic: intake published $2.00 for its first day, then $1.00 and, later
the same day, a revised $1.50 for its second: $3.50 for the month (never $4.50, the Sum).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agentdeploy.naming import METRIC_SPEND_DAY_USD, METRIC_SPEND_USD
from agentdeploy.ops.anthropic_admin import AdminClient
from agentdeploy.ops.aws import AwsSession
from agentdeploy.ops.cost_sources import collect_report, metered_spend, whole_day_warning
from agentdeploy.ops.spend_publish import DaySpend, PublishResult, gateway_less, publish
from agentdeploy.ops.stackplan import stack_plan
from agentdeploy.ops.status import collect_status
from agentdeploy.stacks.components.alerts import spend_metric

from . import cloud
from .admin_server import AdminServer
from .deploy_cli import assert_clean_error, deploy

#: A fixed "now" at noon, two or three days back and never on the 1st, so the month holds the
#: day before it too: the days never straddle the wall clock's midnight or a month's start.
_BACK = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=2)
NOW = _BACK - timedelta(days=1) if _BACK.day == 1 else _BACK
TODAY = NOW.replace(hour=0)
YESTERDAY = TODAY - timedelta(days=1)
MONTH_START = TODAY.replace(day=1)


def _published(*days: tuple[str, datetime, float, datetime]) -> None:
    """(agent, day, running total, when published) through spend_publish's writer."""
    cw = AwsSession().client("cloudwatch")
    for agent, day, usd, at in days:
        publish(cw, PublishResult("shop", day.isoformat(), at.isoformat(),
                                  days=[DaySpend(agent, day.date().isoformat(), usd, "stack-key", at.isoformat())]))


def _world() -> None:
    _published(("intake", YESTERDAY, 2.0, YESTERDAY + timedelta(hours=23, minutes=59)),
               ("intake", TODAY, 1.0, NOW - timedelta(hours=2)),
               ("intake", TODAY, 1.5, NOW - timedelta(hours=1)),  # the same day, revised: replaces 1.0
               # last month's last day: outside this month's budget
               ("intake", MONTH_START - timedelta(days=1), 40.0, MONTH_START - timedelta(seconds=1)))
    # the gateway's increments, for the gateway stack's reading (a gateway-less stack has none)
    cloud.put_metric(METRIC_SPEND_USD, "shop", "intake", 0.75, NOW - timedelta(hours=3))
    cloud.put_metric(METRIC_SPEND_USD, "shop", "intake", 0.25, NOW - timedelta(hours=1), {"Replica": "gw-2"})


def _status(stack: str = "shop"):
    plan, catalog = stack_plan(stack)
    session = AwsSession()
    return plan, collect_status(plan, catalog, stack, session.region, session.client("autoscaling"), session.client("ec2"),
                                session.client("cloudwatch"), None, now=NOW)


def test_the_readers_metric_is_the_one_the_spend_alarms_read(project: Path) -> None:
    plan, _ = stack_plan("shop")
    router, _ = stack_plan("router")
    assert gateway_less(plan)
    assert not gateway_less(router)
    assert metered_spend(plan).metric == spend_metric(plan).name == METRIC_SPEND_DAY_USD
    assert metered_spend(router).metric == spend_metric(router).name == METRIC_SPEND_USD


def test_status_of_a_gateway_less_stack_counts_the_published_day_totals(aws, project: Path) -> None:
    _world()
    plan, status = _status()
    by = {a.agent: a for a in status.agents}
    budget = next(a for a in plan.agents if a.name == "intake").budget.monthly_usd
    assert by["intake"].spent_month_usd == 3.5
    assert by["intake"].budget_used_pct == round(100 * 3.5 / budget, 1)
    assert by["sales-brief"].spent_month_usd is None
    assert by["sales-brief"].notes == ["no spend published yet (SpendUSDDay; is `deploy spend publish` scheduled?)"]
    # no gateway to probe, and status says why rather than asking for a URL
    assert status.gateway.url is None
    assert status.gateway.ready is None
    assert status.gateway.detail.startswith("none: the plan deploys no gateway")


def test_status_of_a_gateway_stack_still_sums_the_gateways_increments(aws, gateway_shop: Path) -> None:
    _world()
    plan, status = _status()
    assert not gateway_less(plan)
    by = {a.agent: a for a in status.agents}
    assert by["intake"].spent_month_usd == 1.0
    assert by["sales-brief"].notes == ["no spend metric from the gateway yet"]
    assert status.gateway.detail == "gateway URL unknown (pass --gateway-url)"


def _cost(planned, admin=None, since=MONTH_START, until=NOW):
    plan, catalog = planned
    session = AwsSession()
    return collect_report(plan, catalog, "shop", since, until, session.client("ec2"), session.client("cloudwatch"), admin,
                          threshold=0.25)


def test_cost_of_a_gateway_less_stack_attributes_from_the_published_day_totals(aws, project: Path) -> None:
    _world()
    report = _cost(stack_plan("shop"))
    by = {a.agent: a for a in report.agents}
    assert (by["intake"].claude_usd, by["intake"].claude_source) == (3.5, "published-metric")
    assert by["sales-brief"].claude_source == "none"
    assert any("no Claude spend found for sales-brief, marketing-drafts (no API key of its own and nothing in "
               "SpendUSDDay)" in w for w in report.warnings)
    # NOW is noon of a day already over: that day's total counts whole, and the report says so
    assert any(w.startswith(f"--until {NOW.isoformat()} cuts a UTC day") for w in report.warnings)
    # only yesterday's whole day: its published total, not a share of it, and nothing to say
    one_day = _cost(stack_plan("shop"), since=YESTERDAY, until=TODAY)
    assert next(a for a in one_day.agents if a.agent == "intake").claude_usd == 2.0
    assert not any("cuts a UTC day" in w for w in one_day.warnings)


def test_cost_of_a_gateway_stack_is_unchanged(aws, gateway_shop: Path) -> None:
    _world()
    by = {a.agent: a for a in _cost(stack_plan("shop")).agents}
    assert (by["intake"].claude_usd, by["intake"].claude_source) == (1.0, "gateway-metric")


def test_a_window_cutting_a_day_says_the_published_days_count_whole() -> None:
    noon = YESTERDAY + timedelta(hours=12)
    assert whole_day_warning(noon, NOW, NOW) == (
        f"--since {noon.isoformat()} cuts a UTC day, but the published spend is per whole day: those days count whole; "
        "pass dates for an exact window")
    assert "--until" in (whole_day_warning(YESTERDAY, noon, NOW) or "")
    assert whole_day_warning(YESTERDAY, NOW, NOW) is None  # up to now: today's total is the spend so far
    assert whole_day_warning(YESTERDAY, TODAY, NOW) is None


def test_the_admin_api_checks_the_published_figures(aws, project: Path, admin_api: AdminServer) -> None:
    """The stack key spent $5.00 this month; $3.50 was published: the gap names the publisher."""
    _world()
    keys = [{"id": "k-shop", "name": "shop"}]
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=keys).raise_for_status()
    httpx.post(f"{admin_api.url}/_emulator/usage", json=[
        {"at": (TODAY + timedelta(hours=9)).isoformat(), "api_key_id": "k-shop", "model": "claude-haiku-4-5-20251001",
         "uncached_input_tokens": 5_000_000}]).raise_for_status()
    with AdminClient(api_key=admin_api.key, base_url=admin_api.url) as admin:
        report = _cost(stack_plan("shop"), admin)
    assert report.claude_stack_key_usd == 5.0
    assert ("the Anthropic key shop spent $5.00 (Admin API, catalog-priced), $1.50 more than the $3.50 `deploy spend "
            "publish` published for agents; a model or tier no agent is planned on used the key, or the latest usage is "
            "not published yet (is `deploy spend publish` scheduled?)") in report.warnings


def test_cli_cost_without_an_admin_key_names_the_published_metric(aws, project: Path) -> None:
    now = datetime.now(UTC)
    _published(("intake", now, 1.25, now))
    proc = deploy("cost", "--stack", "shop", "--json", "--since", now.date().isoformat())
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    intake = next(a for a in doc["agents"] if a["agent"] == "intake")
    assert (intake["claude_usd"], intake["claude_source"]) == (1.25, "published-metric")
    assert doc["warnings"][0] == ("Claude spend from the per-agent day totals `deploy spend publish` writes (SpendUSDDay) "
                                  "only (ANTHROPIC_ADMIN_KEY not set)")


def test_spend_publish_without_an_admin_key_does_not_suggest_a_cost_option(project: Path) -> None:
    proc = deploy("spend", "publish", "--stack", "shop", "--dry-run")
    assert_clean_error(proc, 4, "ANTHROPIC_ADMIN_KEY is not set")
    assert "--claude-source" not in proc.stderr
    assert "only record of a gateway-less stack's spend" in proc.stderr
    # `deploy cost` still offers its fallback
    cost = deploy("cost", "--stack", "shop", "--claude-source", "admin")
    assert_clean_error(cost, 4, "--claude-source gateway")


@pytest.mark.parametrize("stack", ["shop", "router"])
def test_status_cli_reads_the_stacks_metric(aws, project: Path, stack: str) -> None:
    """The command as a user runs it: the note names the metric the stack's kind writes."""
    proc = deploy("status", "--stack", stack, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    notes = {n for a in doc["agents"] for n in a["notes"]}
    expected = metered_spend(stack_plan(stack)[0]).missing
    assert expected in notes
