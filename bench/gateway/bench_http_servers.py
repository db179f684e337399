"""HTTP server comparison: the gateway's own serving/http1.py against well-kept servers, in ONE run.

Each server runs the same minimal app, the shape of the gateway's work without the gateway:
POST with a small JSON body (read whole), answered with a chunked stream of 20 SSE chunks and
`data: [DONE]`, written as they are produced. Candidates (whichever are installed):

- http1: `agentdeploy.serving.http1.Server` on uvloop (what the gateway runs today);
- uvicorn: `--loop uvloop --http httptools`, raw ASGI app;
- hypercorn: `--worker-class uvloop`, raw ASGI app;
- granian: `--interface asgi`, one worker, one runtime thread.

Every server runs alone on CPU 0 (`taskset -c 0`); the load generator (bench_gateway's raw
asyncio client) runs on CPU 1. Rounds are interleaved; "added" is each round's difference to
http1, and the report takes the median of those differences (as bench/RESULTS.md documents).

    pip install uvicorn hypercorn granian   # once (bench only: the gateway needs none of them)
    python bench/gateway/bench_http_servers.py [--duration 4] [--rounds 3] [--json out.json]

Run the app alone:  python bench/gateway/bench_http_servers.py --serve http1|asgi --port P
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.support.procs import free_port, start_process, wait_for_http  # noqa: E402

CHUNKS = [b"data: {\"choices\":[{\"delta\":{\"content\":\"word%d \"}}]}\n\n" % i for i in range(20)] + [b"data: [DONE]\n\n"]
SERVER_CPU, LOAD_CPU = "0", "1"


# --------------------------------------------------------------------------- the apps


async def asgi_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """The raw ASGI app the well-kept servers run."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    json.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for chunk in CHUNKS:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def serve_http1(port: int) -> None:
    import uvloop

    from agentdeploy.serving.http1 import Request, Response, Server, StreamResponse

    async def stream(request: Request) -> StreamResponse:
        json.loads(await request.read())
        resp = StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in CHUNKS[:-1]:
            await resp.write(chunk)
        await resp.write_eof(CHUNKS[-1])
        return resp

    async def healthz(request: Request) -> Response:
        return Response(text="ok")

    async def main() -> None:
        server = Server({("POST", "/v1/chat/completions"): stream, ("GET", "/healthz"): healthz})
        await server.start("127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


# --------------------------------------------------------------------------- the candidates


def candidates(port: int) -> dict[str, list[str]]:
    me = str(Path(__file__).resolve())
    py = sys.executable
    out = {"http1": [py, me, "--serve", "http1", "--port", str(port)]}
    app = "bench_http_servers:asgi_app"
    if shutil.which("uvicorn") or _has("uvicorn"):
        out["uvicorn"] = [py, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                          "--no-access-log", "--log-level", "warning", "--app-dir", str(Path(me).parent)]
    if _has("hypercorn"):
        out["hypercorn"] = [py, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}", "--worker-class", "uvloop",
                            "--log-level", "warning", "--root-path", "", "--workers", "1"]
    if _has("granian"):
        out["granian"] = [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                          "--workers", "1", "--runtime-threads", "1", "--no-ws", "--log-level", "warning", app]
    return out


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", choices=["http1"], default=None)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--sat-concurrency", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.serve == "http1":
        serve_http1(args.port)
        return
    from bench_gateway import load

    os.sched_setaffinity(0, {int(LOAD_CPU)})
    import uvloop

    logs = Path(tempfile.mkdtemp(prefix="bench-http-"))
    rounds: dict[str, list[dict]] = {}
    for i in range(args.rounds):
        for name, argv in candidates(0).items():
            port = free_port()
            argv = candidates(port)[name]
            env = {"PYTHONPATH": f"{Path(__file__).resolve().parent}{os.pathsep}{REPO}"}
            proc = start_process(f"{name}:{port}", ["taskset", "-c", SERVER_CPU, *argv], logs / f"{name}-{i}.log",
                                 env=env, cwd=Path(__file__).resolve().parent)
            try:
                wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout_s=30, process=proc)
                print(f"round {i + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                row = {f"c{c}": uvloop.run(load(port, "/v1/chat/completions", "m", False, c, args.duration))
                       for c in args.concurrency}
                row["sat"] = uvloop.run(load(port, "/v1/chat/completions", "m", False, args.sat_concurrency, args.duration))
                rounds.setdefault(name, []).append(row)
            finally:
                proc.stop(grace_s=3)
    phases = [f"c{c}" for c in args.concurrency]
    summary: dict[str, dict] = {}
    for name, rs in rounds.items():
        s: dict = {"errors": sum(r[p]["errors"] for r in rs for p in [*phases, "sat"]),
                   "rps_one_core": statistics.median(r["sat"]["rps"] for r in rs)}
        for p in phases:
            for k in ("total_p50_ms", "total_p99_ms"):
                s[f"{p}_{k}"] = statistics.median(r[p][k] for r in rs)
                s[f"{p}_added_{k}"] = statistics.median(r[p][k] - rounds["http1"][j][p][k] for j, r in enumerate(rs))
        summary[name] = s
    out = {"config": vars(args), "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}, "versions": _versions(),
           "summary": summary, "rounds": rounds, "logs": str(logs)}
    text = json.dumps(out, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(text)
    print(json.dumps({"summary": summary, "versions": out["versions"]}, indent=2))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("uvicorn", "hypercorn", "granian", "httptools", "uvloop"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
