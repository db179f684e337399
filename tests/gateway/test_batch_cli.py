"""`deploy batch`: submit a JSONL file for the marketing batch agent through the gateway (and
straight to the API with the rendered agent config), follow it, fetch every result; resumable
from its state dir. The emulator's batch clock is driven, never waited on."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.errors import EXIT_INVALID, EXIT_MISSING
from tests.gateway.helpers import env_for, metric_value
from tests.gateway.test_batch_gateway import MARKETING_KEY, _batch_priced_micro, _config, _requests

N = 100
KEY_ENV = {"AGENTDEPLOY_KEY_MARKETING_DRAFTS": MARKETING_KEY}


def _file(tmp_path: Path, n: int = N) -> Path:
    path = tmp_path / "drafts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _requests(n)))
    return path


def _run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, args, env=env or KEY_ENV, catch_exceptions=False)


def test_submit_status_results_through_the_gateway(claude_emulator, gateway_factory, tmp_path):
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    gw = gateway_factory(_config(claude), env=env_for(claude))
    drafts, state = _file(tmp_path), tmp_path / "state"
    base = ["--state-dir", str(state), "--json"]

    sub = _run(["batch", "submit", str(drafts), "--agent", "marketing-drafts", "--gateway-url", gw.url, *base])
    assert sub.exit_code == 0, sub.output
    doc = json.loads(sub.output)
    assert doc["requests"] == N
    assert doc["resumed"] is False
    bid = doc["id"]
    assert json.loads((state / f"{bid}.json").read_text())["agent"] == "marketing-drafts"

    again = json.loads(_run(["batch", "submit", str(drafts), "--agent", "marketing-drafts", "--gateway-url", gw.url, *base]).output)
    assert again == {**doc, "resumed": True}  # the same file is not paid for twice
    assert len(claude._call("GET", "/_emulator/batches/usage")) == 0

    claude._call("POST", "/_emulator/batches/process", {"requests": 30})
    st = json.loads(_run(["batch", "status", bid, *base]).output)
    assert st["processing_status"] == "in_progress"
    assert st["request_counts"]["succeeded"] == 30
    early = _run(["batch", "results", bid, "--out", str(tmp_path / "r.jsonl"), "--no-wait", *base])
    assert early.exit_code == EXIT_INVALID
    assert not (tmp_path / "r.jsonl").exists()

    claude._call("POST", "/_emulator/batches/process", {})
    out = tmp_path / "results.jsonl"
    res = _run(["batch", "results", bid, "--out", str(out), *base])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["results"] == N
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(r["custom_id"] for r in _requests(N))
    assert all(x["result"]["type"] == "succeeded" for x in lines)
    expected = _batch_priced_micro(claude._call("GET", "/_emulator/batches/usage"))
    assert metric_value(gw.metrics(), "agentdeploy_gateway_cost_usd_total", agent="marketing-drafts") == expected / 1e6
    assert json.loads((state / f"{bid}.json").read_text())["results_file"] == str(out)


def test_submit_and_wait_straight_to_the_api_with_the_agent_config(claude_emulator, tmp_path):
    """Without a gateway: the rendered agent config pins the model, caps max_tokens and caches
    the prefix; --wait follows to the end (the emulator ends batches as they come) and fetches."""
    claude = claude_emulator
    claude._call("DELETE", "/_emulator/batches")
    claude._call("POST", "/_emulator/batches/config", {"auto": True})
    cfg = tmp_path / "marketing-drafts.json"
    cfg.write_text(json.dumps({"agent": "marketing-drafts", "route": "batch", "model": "claude-haiku-4-5", "max_tokens": 256,
                               "batch": True, "cache": {"enabled": True, "ttl": "1h", "breakpoints": ["system"], "min_cacheable_tokens": 4096},
                               "anthropic_api_key_env": "ANTHROPIC_API_KEY"}))
    out = tmp_path / "results.jsonl"
    args = ["batch", "submit", str(_file(tmp_path, 10)), "--agent-config", str(cfg), "--api-url", claude.base_url, "--wait", "--out", str(out),
            "--poll-s", "0", "--state-dir", str(tmp_path / "s"), "--json"]
    missing = _run(args, env={"ANTHROPIC_API_KEY": ""})
    assert missing.exit_code == EXIT_MISSING
    assert "ANTHROPIC_API_KEY" in missing.output
    done = _run(args, env={"ANTHROPIC_API_KEY": claude.api_key})
    claude._call("POST", "/_emulator/batches/config", {"auto": False})
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["request_counts"]["succeeded"] == 10
    msgs = [json.loads(x)["result"]["message"] for x in out.read_text().splitlines()]
    assert all(m["model"] == "claude-haiku-4-5" and m["usage"]["service_tier"] == "batch" for m in msgs)
    assert sum(1 for m in msgs if m["usage"]["cache_creation"]["ephemeral_1h_input_tokens"]) == 1
    assert sum(1 for m in msgs if m["usage"]["cache_read_input_tokens"]) == 9


def test_bad_input_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_requests(1)[0]) + "\n{not json\n")
    r = _run(["batch", "submit", str(bad), "--agent", "marketing-drafts", "--gateway-url", "http://127.0.0.1:9"])
    assert r.exit_code == EXIT_INVALID
    assert f"{bad}:2" in r.output
    r = _run(["batch", "status", "msgbatch_nope", "--state-dir", str(tmp_path)])
    assert r.exit_code == EXIT_INVALID
    assert "no batch msgbatch_nope" in r.output


def test_direct_mode_refuses_what_one_batch_cannot_hold():
    import pytest

    from agentdeploy.errors import InvalidInput
    from agentdeploy.ops.batch_client import apply_agent_config

    config = {"agent": "m", "model": "claude-haiku-4-5", "max_tokens": 16, "batch": True, "cache": {"enabled": False}}
    tiny = [{"custom_id": f"r{i}", "params": {"messages": [{"role": "user", "content": "x"}]}} for i in range(100_001)]
    with pytest.raises(InvalidInput, match="100,000 requests"):
        apply_agent_config(tiny, config)
    assert len(apply_agent_config(tiny[:3], config)) == 3
    with pytest.raises(InvalidInput, match="not a batch agent"):
        apply_agent_config(tiny[:1], {**config, "batch": False})
