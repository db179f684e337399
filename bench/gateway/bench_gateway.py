"""Gateway overhead benchmark: direct vs agentdeploy gateway vs LiteLLM proxy, in ONE run.

What it measures, against the same fast local upstream (bench/gateway/fast_upstream.py):
- latency at 1, 16 and 64 concurrent streams (each stream: 20 chunks, 5 ms apart, first at
  once): time to first byte and to the last byte, p50/p99; "added" = proxy minus direct within
  each round, and the report takes the median of those per-round differences;
- max requests/s with 32 concurrent streams against an upstream that answers at once.

The gateway runs the config `deploy render` writes for examples/high-volume-router.yaml (its
GPU agent `ticket-router`, with `--vllm-replica` pointing at the local upstream), not a
hand-written one: what is measured is what a deployment serves.

Pinning (2-core machine): every proxy runs alone on CPU 0 (`taskset -c 0`); the upstreams and
this load generator share CPU 1. The load generator is a raw asyncio HTTP/1.1 client (canned
request bytes, chunked-end detection) so it costs little next to the proxies.

LiteLLM runs from its own venv so it cannot disturb the project's environment:
    python -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]'
It is started with LITELLM_LOCAL_MODEL_COST_MAP=True and telemetry off (no outside traffic).

Run (from the repo root):
    python bench/gateway/bench_gateway.py [--duration 10] [--litellm .venv-litellm/bin/litellm] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.procs import free_port, start_process, wait_for_http  # noqa: E402

KEY = "sk-bench0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
PROXY_CPU, LOAD_CPU = "0", "1"


# --------------------------------------------------------------------------- load generator


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.first: float | None = None
        self.header_end = -1
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.header_end < 0:
            self.header_end = self.buf.find(b"\r\n\r\n")
            if self.header_end < 0:
                return
        if self.first is None and len(self.buf) > self.header_end + 4:
            self.first = time.perf_counter()
        if self.buf.endswith(b"\r\n0\r\n\r\n") or (self.buf.endswith(b"0\r\n\r\n") and self.buf.find(b"\r\n\r\n0\r\n\r\n") >= 0):
            if self.waiter and not self.waiter.done():
                self.waiter.set_result(bytes(self.buf))

    def connection_lost(self, exc) -> None:
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


async def _worker(port: int, request: bytes, stop_at: float, warm_until: float, out: list, errors: list) -> None:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
    while time.perf_counter() < stop_at:
        conn.buf.clear()
        conn.first = None
        conn.header_end = -1
        conn.waiter = loop.create_future()
        t0 = time.perf_counter()
        conn.transport.write(request)
        try:
            body = await asyncio.wait_for(conn.waiter, 30)
        except (TimeoutError, ConnectionError):
            errors.append("timeout/closed")
            _, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
            continue
        t1 = time.perf_counter()
        if not body.startswith(b"HTTP/1.1 200") or b"[DONE]" not in body:
            errors.append(body[:120])
            continue
        if t0 >= warm_until:
            out.append((conn.first - t0, t1 - t0))
    conn.transport.close()


async def load(port: int, path: str, model: str, auth: bool, concurrency: int, duration: float, warmup: float = 1.0) -> dict:
    body = json.dumps({"model": model, "stream": True, "max_tokens": 64, "messages": [{"role": "user", "content": "benchmark prompt, short"}]}).encode()
    headers = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    if auth:
        headers += f"authorization: Bearer {KEY}\r\n"
    request = headers.encode() + b"\r\n" + body
    start = time.perf_counter()
    out: list = []
    errors: list = []
    await asyncio.gather(*(_worker(port, request, start + warmup + duration, start + warmup, out, errors) for _ in range(concurrency)))
    ttfb = sorted(x[0] for x in out)
    total = sorted(x[1] for x in out)

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")

    return {
        "requests": len(out), "errors": len(errors), "error_sample": [str(e) for e in errors[:3]],
        "rps": len(out) / duration,
        "ttfb_p50_ms": pct(ttfb, 50), "ttfb_p99_ms": pct(ttfb, 99),
        "total_p50_ms": pct(total, 50), "total_p99_ms": pct(total, 99),
        "total_mean_ms": statistics.fmean(total) * 1000 if total else float("nan"),
    }


# --------------------------------------------------------------------------- processes


def start_upstream(port: int, delay_ms: float, logs: Path):
    argv = ["taskset", "-c", LOAD_CPU, sys.executable, str(REPO / "bench/gateway/fast_upstream.py"), "--port", str(port), "--chunks", "20", "--delay-ms", str(delay_ms)]
    proc = start_process(f"upstream:{port}", argv, logs / f"upstream-{port}.log")
    wait_for_http(f"http://127.0.0.1:{port}/metrics", timeout_s=15, process=proc)
    return proc


DECISION_FILE = REPO / "examples/high-volume-router.yaml"
GPU_AGENT = "ticket-router"
MAIN = "from agentdeploy.cli.main import main; main()"


def render_config(upstream_port: int, out: Path) -> Path:
    """`deploy render` of the example plan, its GPU agent's replicas = the bench upstream on
    three loopback addresses (the plan's max_load_per_replica of 22 would otherwise send the
    64-stream phase's overflow to Claude, which the bench does not run)."""
    import subprocess

    env = {**os.environ, f"AGENTDEPLOY_KEY_{GPU_AGENT.upper().replace('-', '_')}": KEY,
           "AGENTDEPLOY_KEY_ANSWER_DRAFTS": KEY[::-1]}
    argv = [sys.executable, "-c", MAIN, "render", str(DECISION_FILE), "--out", str(out),
            *[a for i in (1, 2, 3) for a in ("--vllm-replica", f"{GPU_AGENT}=http://127.0.0.{i}:{upstream_port}")],
            "--anthropic-base-url", "http://127.0.0.1:9"]
    subprocess.run(argv, check=True, env=env, capture_output=True, cwd=REPO)
    return out / "gateway.yaml"


def start_gateway(upstream_port: int, logs: Path, tag: str):
    port = free_port()
    path = render_config(upstream_port, logs / f"render-{tag}")
    argv = ["taskset", "-c", PROXY_CPU, sys.executable, "-c", MAIN, "serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    # The Claude fallback is never reached (the local upstream answers); serve wants its key set.
    proc = start_process(f"gateway-{tag}", argv, logs / f"gateway-{tag}.log", env={"ANTHROPIC_API_KEY": "unused-in-bench"})
    wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30, process=proc)
    return proc, port


def start_litellm(binary: str, slow_port: int, fast_port: int, logs: Path):
    import yaml

    port = free_port()
    def model(name: str, up: int) -> dict:
        return {"model_name": name, "litellm_params": {"model": "openai/bench-model", "api_base": f"http://127.0.0.1:{up}/v1", "api_key": "unused"}}
    # Same key as the gateway's: both proxies authenticate every request.
    cfg = {"model_list": [model("bench", slow_port), model("bench-fast", fast_port)], "litellm_settings": {"telemetry": False},
           "general_settings": {"master_key": KEY}}
    path = logs / "litellm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true", "NO_PROXY": "*"}
    argv = ["taskset", "-c", PROXY_CPU, binary, "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = start_process("litellm", argv, logs / "litellm.log", env=env)
    wait_for_http(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=120, process=proc)
    return proc, port


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (after 1 s warm-up)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--sat-concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the report takes each figure's median")
    ap.add_argument("--litellm", default=str(REPO / ".venv-litellm/bin/litellm"))
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    args = ap.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    logs = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    slow_port, fast_port = free_port(), free_port()
    procs = [start_upstream(slow_port, 5.0, logs), start_upstream(fast_port, 0.0, logs)]
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}, "config": vars(args), "logs": str(logs)}
    try:
        gw, gw_port = start_gateway(slow_port, logs, "slow")
        gw_fast, gw_fast_port = start_gateway(fast_port, logs, "fast")
        procs += [gw, gw_fast]
        targets = {"direct": (slow_port, fast_port, "/v1/chat/completions", False),
                   "gateway": (gw_port, gw_fast_port, "/v1/chat/completions", True)}
        have_litellm = Path(args.litellm).exists()
        if have_litellm:
            ll, ll_port = start_litellm(args.litellm, slow_port, fast_port, logs)
            procs.append(ll)
            targets["litellm"] = (ll_port, ll_port, "/v1/chat/completions", True)
        else:
            print(f"LiteLLM not found at {args.litellm}: install it as the docstring says", file=sys.stderr)
        rounds: dict[str, list] = {name: [] for name in targets}
        for i in range(args.rounds):
            for name, (lat_port, sat_port, path, auth) in targets.items():
                print(f"round {i + 1}/{args.rounds}: measuring {name} ...", file=sys.stderr, flush=True)
                row = {f"latency_{c}_streams": asyncio.run(load(lat_port, path, "bench", auth, c, args.duration))
                       for c in args.concurrency}
                row["throughput"] = asyncio.run(load(sat_port, path, "bench-fast", auth, args.sat_concurrency, args.duration))
                rounds[name].append(row)
        phases = [f"latency_{c}_streams" for c in args.concurrency] + ["throughput"]
        for name, rs in rounds.items():
            results[name] = {
                phase: {k: statistics.median(r[phase][k] for r in rs) for k in rs[0][phase] if isinstance(rs[0][phase][k], (int, float))}
                for phase in phases
            }
            results[name]["errors_total"] = sum(r[p]["errors"] for r in rs for p in phases)
            results[name]["rounds"] = rs
    finally:
        for p in procs:
            p.stop(grace_s=3)
    results["machine"]["loadavg_end"] = os.getloadavg()
    summary: dict = {}
    direct_rounds = results["direct"]["rounds"]
    for name in ("gateway", "litellm"):
        if name not in results:
            continue
        rs = results[name]["rounds"]
        summary[name] = {"max_rps_one_core": results[name]["throughput"]["rps"]}
        for c in args.concurrency:
            phase = f"latency_{c}_streams"
            for k in ("ttfb_p50_ms", "ttfb_p99_ms", "total_p50_ms", "total_p99_ms"):
                # The median of each round's difference (proxy minus direct in the same round).
                summary[name][f"{phase}_added_{k}"] = statistics.median(r[phase][k] - d[phase][k] for r, d in zip(rs, direct_rounds, strict=True))
    if "litellm" in summary:
        summary["throughput_ratio_gateway_vs_litellm"] = summary["gateway"]["max_rps_one_core"] / max(1e-9, summary["litellm"]["max_rps_one_core"])
    results["summary"] = summary
    text = json.dumps(results, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
