"""`deploy plan` and `deploy schema` as users and pipelines call them."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from agentdeploy.cli.main import cli

from .conftest import EXAMPLES, ROOT, agent_doc, decision_doc

CONTRACT_AGENT_KEYS = {"name", "route", "model", "streaming", "max_tokens", "cache", "latency", "cost", "break_even_conversations_per_month", "why"}


def test_json_contract():
    result = CliRunner().invoke(cli, ["plan", str(EXAMPLES / "service-business.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"agents", "totals", "baseline"} <= set(doc)
    for agent in doc["agents"]:
        assert CONTRACT_AGENT_KEYS <= set(agent)
        assert agent["route"] in ("api", "batch", "gpu")
        assert {"enabled", "ttl"} <= set(agent["cache"])
        assert {"ceiling_s", "p95_estimate_s"} <= set(agent["latency"])
        assert {"launch", "month_12"} <= set(agent["cost"]["monthly_usd"])
        assert isinstance(agent["cost"]["per_conversation_usd"], float)
        assert agent["why"]
        assert all(isinstance(w, str) for w in agent["why"])
    assert doc["totals"]["monthly_usd"]["month_12"] >= doc["totals"]["monthly_usd"]["launch"]


def test_table_and_markdown_show_every_agent():
    runner = CliRunner()
    table = runner.invoke(cli, ["plan", str(EXAMPLES / "high-volume-router.yaml")])
    md = runner.invoke(cli, ["plan", str(EXAMPLES / "high-volume-router.yaml"), "--markdown"])
    assert table.exit_code == md.exit_code == 0
    for name in ("ticket-router", "answer-drafts"):
        assert name in table.output
        assert f"| {name} |" in md.output
    assert "break-even" in md.output
    assert "Naive baseline" in md.output
    assert "<details>" in md.output


def test_chart_writes_png(tmp_path):
    out = tmp_path / "cost.png"
    result = CliRunner().invoke(cli, ["plan", str(EXAMPLES / "high-volume-router.yaml"), "--chart", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_infeasible_exit_code_3(write_decision):
    path = write_decision(decision_doc({"a": agent_doc(latency={"p95_s": 0.3, "audience": "interactive"},
                                                       quality={"wrong_answer_cost": "critical", "task": "reasoning"})}))
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert result.exit_code == 3
    assert "relax latency: raise latency.p95_s from 0.3" in result.output
    assert f"{path}:" in result.output


def test_errors_in_json_mode_are_json(write_decision):
    result = CliRunner().invoke(cli, ["plan", "/no/such/file.yaml", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["exit_code"] == 2


def test_unknown_pinned_model_is_invalid_with_line(write_decision):
    path = write_decision(decision_doc({"a": agent_doc(overrides={"model": "claude-haiku-9"})}))
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert result.exit_code == 2
    assert "unknown model 'claude-haiku-9'" in result.output
    assert f"{path}:" in result.output


def test_schema_command():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "agentdeploy decision file"


HEAVY = ("pulumi", "pulumi_aws", "boto3", "botocore", "httpx", "matplotlib", "aiohttp")


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from agentdeploy.cli.main import cli\n"
        "try:\n"
        f"    cli({args!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        f"print('MODS', ' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("MODS")][-1]
    return set(line.split()[1:])


def test_help_and_plan_stay_light(tmp_path):
    assert _modules_after(["--help"]) == set()
    assert _modules_after(["plan", str(EXAMPLES / "service-business.yaml"), "--json"]) == set()
    chart = _modules_after(["plan", str(EXAMPLES / "service-business.yaml"), "--chart", str(tmp_path / "c.svg")])
    assert chart == {"matplotlib"}


def test_scale_flag_multiplies_volume(write_decision):
    path = write_decision(decision_doc({"a": agent_doc()}))
    runner = CliRunner()
    one = json.loads(runner.invoke(cli, ["plan", str(path), "--json"]).stdout)
    three = json.loads(runner.invoke(cli, ["plan", str(path), "--json", "--scale", "3"]).stdout)
    assert three["volume_scale"] == 3.0
    assert three["agents"][0]["volume"]["launch"] == 3000
    # Haiku, no caching: 3 x $6.00
    assert one["agents"][0]["cost"]["monthly_usd"]["launch"] == 6.0
    assert three["agents"][0]["cost"]["monthly_usd"]["launch"] == 18.0


def test_catalog_flag_applies_an_override_file(write_decision, tmp_path):
    path = write_decision(decision_doc({"a": agent_doc()}))
    rates = tmp_path / "rates.yaml"
    rates.write_text("claude_models:\n  claude-haiku-4-5:\n    output_usd_per_mtok: 4.0\n    source: negotiated rate sheet\n    as_of: 2026-11-01\n")
    result = CliRunner().invoke(cli, ["plan", str(path), "--json", "--catalog", str(rates)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # 1000 x (2000 x $1/M + 800 x $4/M) = $5.20
    assert doc["agents"][0]["cost"]["monthly_usd"]["launch"] == 5.2
    assert str(rates) in doc["catalog"]["overrides"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("claude_models:\n  claude-haiku-4-5:\n    output_usd_per_mtk: 4.0\n")
    result = CliRunner().invoke(cli, ["plan", str(path), "--catalog", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3:" in result.output
    assert "did you mean 'output_usd_per_mtok'?" in result.output
