"""The shared test-environment helpers other folders build on: policy and process hygiene."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.support import procs
from tests.support import redis as redis_support
from tests.support import vllm as vllm_support


def test_missing_vllm_fails_with_setup_hint_unless_skip_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_PYTHON", "/nonexistent/venv/bin/python")
    monkeypatch.delenv(vllm_support.ALLOW_SKIP_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception) as failed:
        vllm_support.require_vllm_python()
    assert "scripts/setup-vllm.sh" in str(failed.value)
    monkeypatch.setenv(vllm_support.ALLOW_SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception) as skipped:
        vllm_support.require_vllm_python()
    assert "AGENTDEPLOY_ALLOW_SKIP_VLLM=1" in str(skipped.value)


def test_missing_redis_fails_unless_skip_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SERVER", "/nonexistent/redis-server")
    monkeypatch.delenv(redis_support.ALLOW_SKIP_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception) as failed:
        redis_support._require_redis()
    assert "apt-get install redis-server" in str(failed.value)
    monkeypatch.setenv(redis_support.ALLOW_SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception):
        redis_support._require_redis()


@pytest.mark.integration
def test_redis_fixture_is_a_real_server_without_persistence(redis_server) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.set("budget:agent", 42)
    assert client.get("budget:agent") == b"42"
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"
    redis_server.flushall()
    assert client.dbsize() == 0


def test_group_kill_reaches_grandchildren(tmp_path: Path) -> None:
    # A parent that spawns a sleeping child and prints its pid, like vLLM's API + engine processes.
    script = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = procs.start_process("tree", [sys.executable, "-c", script], tmp_path / "tree.log")
    deadline = time.monotonic() + 10
    while not (tmp_path / "tree.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int((tmp_path / "tree.log").read_text().split()[0])
    assert Path(f"/proc/{child_pid}").exists()
    proc.kill()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child_pid}").exists(), "grandchild survived the group kill"


def test_wait_for_http_reports_a_dead_process_with_its_log(tmp_path: Path) -> None:
    proc = procs.start_process(
        "dies", [sys.executable, "-c", "print('boom: bad flag'); raise SystemExit(3)"], tmp_path / "d.log"
    )
    with pytest.raises(procs.ProcessDied) as died:
        procs.wait_for_http(f"http://127.0.0.1:{procs.free_port()}/health", timeout_s=20, process=proc)
    assert "boom: bad flag" in str(died.value)
