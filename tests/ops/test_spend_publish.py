"""`deploy spend publish` against the Admin API emulator and moto's CloudWatch: a gateway-less
stack's per-agent Claude spend lands where its spend alarms look, once, however often it runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import boto3
import httpx
import pytest

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import DIM_AGENT, DIM_STACK, METRIC_NAMESPACE
from agentdeploy.ops.aws import AwsSession
from agentdeploy.ops.spend_publish import attribute_days, published_total, run_publish, stamp
from agentdeploy.planner import build_plan, load_catalog, load_decision_file
from agentdeploy.stacks.components.alerts import spend_alarms, spend_metric

from .admin_server import AdminServer
from .deploy_cli import assert_clean_error, deploy

#: A fixed "now", two days back at noon: the test's days never straddle the wall clock's midnight.
NOW = (datetime.now(UTC) - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
TODAY = NOW.replace(hour=0)
YESTERDAY = TODAY - timedelta(days=1)


def _usage(admin_api: AdminServer, rows: list[dict]) -> None:
    httpx.post(f"{admin_api.url}/_emulator/usage", json=rows).raise_for_status()


@pytest.fixture
def world(project, admin_api: AdminServer, aws, monkeypatch):
    """Stack `shop` (the service business, gateway-less): intake has a key of its own, the other
    two share the stack's key; another team's key spends too."""
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", admin_api.key)
    keys = [{"id": "k_intake", "name": "shop/intake"}, {"id": "k_shop", "name": "shop"}, {"id": "k_other", "name": "other"}]
    httpx.post(f"{admin_api.url}/_emulator/api_keys", json=keys).raise_for_status()
    at = lambda day, h: (day + timedelta(hours=h)).isoformat()  # noqa: E731
    _usage(admin_api, [
        # today: intake $1.00 + $0.50; sales-brief $3.00; marketing-drafts (batch, half price) $1.50
        {"at": at(TODAY, 9), "api_key_id": "k_intake", "model": "claude-haiku-4-5-20251001",
         "uncached_input_tokens": 1_000_000, "output_tokens": 100_000},
        {"at": at(TODAY, 10), "api_key_id": "k_shop", "model": "claude-sonnet-4-6", "uncached_input_tokens": 1_000_000},
        {"at": at(TODAY, 3), "api_key_id": "k_shop", "model": "claude-sonnet-4-6", "service_tier": "batch",
         "uncached_input_tokens": 1_000_000},
        # the stack's key on a model no agent is planned on: $0.50, reported, not published
        {"at": at(TODAY, 11), "api_key_id": "k_shop", "model": "claude-opus-4-6", "uncached_input_tokens": 100_000},
        # another team's key: not this stack's spend
        {"at": at(TODAY, 11), "api_key_id": "k_other", "model": "claude-haiku-4-5", "uncached_input_tokens": 3_000_000},
        # yesterday: intake $2.00
        {"at": at(YESTERDAY, 15), "api_key_id": "k_intake", "model": "claude-haiku-4-5", "uncached_input_tokens": 2_000_000},
    ])
    return admin_api


def _plan():
    plan = build_plan(load_decision_file(Path(__file__).resolve().parents[2] / "examples" / "service-business.yaml"))
    return plan.model_copy(update={"stack": "shop"})


def _alarm_sees(agent: str, day: datetime, statistic: str | None = None) -> list[float]:
    """What the agent's spend alarm reads for `day`: the alarm as the stack defines it, put into
    moto, then its own metric, dimensions, statistic and period queried back."""
    plan = _plan()
    metric = spend_metric(plan)
    pace = next(a for a in spend_alarms(plan) if a.agent == agent)
    cw = boto3.client("cloudwatch")
    name = f"agentdeploy-shop-{agent}-spend-{pace.pct}pct"
    cw.put_metric_alarm(AlarmName=name, Namespace=METRIC_NAMESPACE, MetricName=metric.name,
                        Dimensions=[{"Name": DIM_STACK, "Value": "shop"}, {"Name": DIM_AGENT, "Value": agent}],
                        Statistic=metric.statistic, Period=metric.period_s, EvaluationPeriods=1,
                        Threshold=pace.daily_usd, ComparisonOperator="GreaterThanThreshold")
    alarm = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    stat = statistic or alarm["Statistic"]
    points = cw.get_metric_statistics(Namespace=alarm["Namespace"], MetricName=alarm["MetricName"],
                                      Dimensions=alarm["Dimensions"], StartTime=day, EndTime=day + timedelta(days=1),
                                      Period=alarm["Period"], Statistics=[stat])["Datapoints"]
    return [round(p[stat], 6) for p in points]


def test_publish_twice_the_alarm_sees_each_days_figure_once(world):
    first = run_publish("shop", None, None, admin_url=world.url, now=NOW)
    assert first.published == 3 * 2  # three agents, yesterday and today
    assert _alarm_sees("intake", TODAY) == [1.5]
    assert _alarm_sees("sales-brief", TODAY) == [3.0]
    assert _alarm_sees("marketing-drafts", TODAY) == [1.5]
    assert _alarm_sees("intake", YESTERDAY) == [2.0]
    assert first.unattributed_usd == 0.5
    assert any("matches no agent" in w for w in first.warnings)

    run_publish("shop", None, None, admin_url=world.url, now=NOW)  # the scheduled job runs again
    assert _alarm_sees("intake", TODAY) == [1.5]
    assert _alarm_sees("sales-brief", TODAY) == [3.0]
    assert _alarm_sees("intake", YESTERDAY) == [2.0]
    # both runs' datapoints are there: an alarm that summed them would see twice the spend
    assert _alarm_sees("intake", TODAY, statistic="Sum") == [3.0]
    # a reader of the period's spend gets each day once: $2.00 yesterday + $1.50 today
    cw = AwsSession().client("cloudwatch")
    assert published_total(cw, "shop", "intake", YESTERDAY, NOW) == 3.5
    assert published_total(cw, "shop", "nobody", YESTERDAY, NOW) is None


def test_a_revised_day_replaces_the_figure_it_does_not_add_to_it(world):
    run_publish("shop", None, None, admin_url=world.url, now=NOW)
    _usage(world, [{"at": (TODAY + timedelta(hours=12, minutes=30)).isoformat(), "api_key_id": "k_intake",
                    "model": "claude-haiku-4-5", "uncached_input_tokens": 500_000}])
    later = run_publish("shop", None, None, admin_url=world.url, now=NOW + timedelta(hours=1))
    assert next(d for d in later.days if d.agent == "intake" and d.day == TODAY.date().isoformat()).usd == 2.0
    assert _alarm_sees("intake", TODAY) == [2.0]


def test_every_datapoint_is_stamped_inside_its_own_day():
    assert stamp(TODAY, NOW) == NOW
    assert stamp(YESTERDAY, NOW) == TODAY - timedelta(seconds=1)


def test_a_shared_key_several_agents_could_have_used_charges_each_of_them():
    """Two keyless agents on the same model and tier: the spend cannot be split, so each alarm
    sees all of it (early, never late) and the result says so."""
    plan = _plan()
    twin = next(a for a in plan.agents if a.name == "sales-brief").model_copy(update={"name": "sales-brief-2"})
    plan = plan.model_copy(update={"agents": [*plan.agents, twin]})
    row = SimpleNamespace(api_key_id="k_shop", model="claude-sonnet-4-6", service_tier="standard", starting_at=TODAY,
                          uncached_input_tokens=1_000_000, cache_read_input_tokens=0, cache_write_5m_tokens=0,
                          cache_write_1h_tokens=0, output_tokens=0, web_search_requests=0)
    spend, source, rest, warnings = attribute_days([row], plan, load_catalog(include_home=False), {}, {"k_shop"})
    day = TODAY.date().isoformat()
    assert spend[("sales-brief", day)] == spend[("sales-brief-2", day)] == 3
    assert source[("sales-brief", day)] == "stack-key-shared"
    assert rest == 0
    assert any("sales-brief, sales-brief-2" in w for w in warnings)


def test_a_stack_with_a_gateway_is_refused(project, admin_api, monkeypatch):
    """The gateway publishes SpendUSD itself: a second publisher would double its alarms' view."""
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", admin_api.key)
    with pytest.raises(InvalidInput) as err:
        run_publish("router", None, None, admin_url=admin_api.url, now=NOW)
    assert "runs the gateway" in str(err.value)
    proc = deploy("spend", "publish", "--stack", "router", "--admin-url", admin_api.url)
    assert_clean_error(proc, 2, "runs the gateway")


def test_a_window_cloudwatch_would_refuse_is_exit_2(world):
    with pytest.raises(InvalidInput) as err:
        run_publish("shop", (NOW - timedelta(days=15)).date().isoformat(), None, admin_url=world.url, now=NOW)
    assert "14 days" in str(err.value)


def test_cli_dry_run_prints_each_agents_days_and_publishes_nothing(world):
    """The command as the scheduled job runs it (here with --dry-run, so AWS is not needed)."""
    now = datetime.now(UTC)
    _usage(world, [{"at": (now - timedelta(minutes=1)).isoformat(), "api_key_id": "k_intake",
                    "model": "claude-haiku-4-5", "output_tokens": 200_000}])  # $1.00, today
    proc = deploy("spend", "publish", "--stack", "shop", "--admin-url", world.url, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["dry_run"] is True
    assert doc["published"] == 0
    assert {d["agent"] for d in doc["days"]} == {"intake", "sales-brief", "marketing-drafts"}
    assert sum(d["usd"] for d in doc["days"] if d["agent"] == "intake") == pytest.approx(1.0)
    assert boto3.client("cloudwatch").list_metrics(Namespace=METRIC_NAMESPACE)["Metrics"] == []
