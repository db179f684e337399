"""Start the serving gateway as a real subprocess (`deploy serve`) for integration tests.

    from tests.support.gateway import gateway_factory  # noqa: F401  (fixture)

    def test_x(gateway_factory, tmp_path):
        gw = gateway_factory(config_dict_or_GatewayConfig, env={"ANTHROPIC_API_KEY": "..."})
        httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, ...)

`start_gateway(config, log_dir, env=...)` writes the config as YAML, runs
`python -c 'agentdeploy.cli.main' serve --config ... --host 127.0.0.1 --port P` in its own
session, waits for /readyz, and returns a `GatewayProcess` (url, log_text(), reload(),
terminate(), stop()).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.procs import LOOPBACK, ManagedProcess, free_port, start_process, wait_for_http

MAIN = "from agentdeploy.cli.main import main; main()"


@dataclass
class GatewayProcess:
    process: ManagedProcess
    port: int
    config_path: Path
    #: The operator listener's port (/metrics without a key), when the config has one.
    operator_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def metrics(self) -> str:
        """The Prometheus page, from the operator listener (the client port asks for a key)."""
        import httpx

        assert self.operator_port is not None, "this gateway's config has no operator listener"
        r = httpx.get(f"http://{LOOPBACK}:{self.operator_port}/metrics", timeout=10)
        r.raise_for_status()
        return r.text

    def log_text(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def write_config(self, config: Any) -> None:
        self.config_path.write_text(_as_yaml(config))

    def reload(self, config: Any | None = None, settle_s: float = 0.3) -> None:
        """Optionally rewrite the config, then SIGHUP (reload without dropping connections)."""
        if config is not None:
            self.write_config(config)
        self.process.popen.send_signal(signal.SIGHUP)
        time.sleep(settle_s)

    def terminate(self) -> None:
        self.process.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        return self.process.wait(timeout)

    def stop(self) -> None:
        self.process.stop(grace_s=5.0)


def _as_dict(config: Any) -> dict:
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json", exclude_none=True)
    return dict(config)


def _as_yaml(config: Any) -> str:
    return yaml.safe_dump(_as_dict(config), sort_keys=False)


def start_gateway(
    config: Any,
    log_dir: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    cpu: int | None = None,
    ready_timeout_s: float = 30.0,
    log_level: str = "info",
) -> GatewayProcess:
    """Run `deploy serve` on a free loopback port with `config` (a GatewayConfig or a dict)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = _as_dict(config)
    operator = dict(config.get("operator") or {})
    if not operator.get("listen"):  # tests read /metrics from a loopback operator listener
        operator["listen"] = {"host": LOOPBACK, "port": free_port()}
        config["operator"] = operator
    config_path = log_dir / f"gateway-{port}.yaml"
    config_path.write_text(_as_yaml(config))
    argv = [sys.executable, "-c", MAIN, "serve", "--config", str(config_path), "--host", LOOPBACK, "--port", str(port), "--log-level", log_level]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = start_process(f"gateway:{port}", argv, log_dir / f"gateway-{port}.log", env=dict(env or {}))
    gw = GatewayProcess(proc, port, config_path, operator["listen"]["port"])
    try:
        wait_for_http(gw.url + "/readyz", timeout_s=ready_timeout_s, process=proc)
    except BaseException:
        proc.kill()
        raise
    return gw


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator:
    started: list[GatewayProcess] = []

    def start(config: Any, env: Mapping[str, str] | None = None, **kw: Any) -> GatewayProcess:
        gw = start_gateway(config, tmp_path / "gateway", env=env, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
