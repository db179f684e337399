"""Time `deploy --help` and `deploy plan` (1,000 and 10,000 agents) as whole processes.

Side by side in one run: the bare interpreter start (`python -c pass`) is the floor every
command pays; the ratios show what agentdeploy adds on top. Each `deploy plan` also reports its
peak resident memory (the child's ru_maxrss) and the SHA-256 of its JSON plan.

With `--before DIR` (a copy of an earlier tree, e.g. `git archive <commit> | tar -x -C DIR`),
each size is also planned by that tree (`python -m agentdeploy` with PYTHONPATH=DIR), in the same
run, and the two plans' JSON must be identical: a speed-up may not change a plan number.

With `--stages`, the tree under test is also timed stage by stage in one process (CPU seconds:
imports, reading and validating the decision file, planning and the JSON text, which `deploy plan
--json` makes agent by agent: planner/jsonstream.py), the way the command runs them (cyclic
collector paused).

    python bench/plan_bench.py [--agents 1000 10000] [--runs 5] [--before DIR] [--stages]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["routing", "classification", "extraction", "qa", "reasoning", "generation"]


def decision_file(n: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    agents = {}
    for i in range(n):
        latency = rng.choice([{"p95_s": 5, "audience": "interactive"}, {"p95_s": 20, "audience": "interactive"}, {"p95_s": 90, "audience": "backend"}, {"audience": "batch"}])
        agents[f"agent-{i}"] = {
            "latency": latency,
            "quality": {"wrong_answer_cost": rng.choice(["low", "medium", "high"]), "task": rng.choice(TASKS)},
            "volume": {"conversations_per_month": rng.choice([500, 5_000, 50_000, 500_000]), "conversations_per_month_12m": rng.choice([1_000, 20_000, 1_000_000])},
            "profile": {"turns": rng.randint(1, 6), "input_tokens_per_turn": rng.randint(100, 5000), "output_tokens_per_turn": rng.randint(20, 1500), "static_prefix_tokens": rng.choice([0, 3000, 8000])},
        }
    return {"version": 1, "stack": {"name": "bench"}, "agents": agents}


def timed(cmd: list[str], runs: int, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int, float, float, str]:
    """Median wall seconds, the last exit code, the largest peak RSS (MB), the median CPU seconds
    (user + system: what the command costs on a machine others share) over the runs, and the
    SHA-256 of the last run's stdout."""
    samples, rc, peak, cpu, digest = [], 0, 0.0, [], ""
    for _ in range(runs):
        with tempfile.TemporaryFile() as out:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
            _, status, usage = os.wait4(proc.pid, 0)
            samples.append(time.perf_counter() - start)
            out.seek(0)
            digest = hashlib.file_digest(out, "sha256").hexdigest()
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc
        peak = max(peak, usage.ru_maxrss / 1024)
        cpu.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(samples), rc, peak, statistics.median(cpu), digest


STAGES = """
import gc, io, sys, time
gc.disable()
t0 = time.process_time()
from agentdeploy.planner import load_decision_file, spec_catalog
from agentdeploy.planner.jsonstream import plan_json_text
t1 = time.process_time()
spec = load_decision_file(sys.argv[1])
catalog = spec_catalog(spec)
t2 = time.process_time()
io.StringIO().writelines(plan_json_text(spec, catalog))
t3 = time.process_time()
print(f"imports {t1 - t0:.3f} s, read {t2 - t1:.3f} s, plan and JSON text {t3 - t2:.3f} s (CPU, in one process)")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", type=Path, help="an earlier tree to plan with too, side by side (its plans must match)")
    parser.add_argument("--stages", action="store_true", help="also time each stage in one process (this tree)")
    args = parser.parse_args()
    deploy = shutil.which("deploy") or sys.exit("`deploy` is not on PATH: pip install -e . first")
    with tempfile.TemporaryDirectory() as tmp:
        base, _, _, base_cpu, _ = timed([sys.executable, "-c", "pass"], args.runs)
        helps, _, _, help_cpu, _ = timed([deploy, "--help"], args.runs)
        print(f"python -c pass           : {base * 1000:8.1f} ms wall, {base_cpu * 1000:8.1f} ms CPU (median of {args.runs})")
        print(f"deploy --help            : {helps * 1000:8.1f} ms wall, {help_cpu * 1000:8.1f} ms CPU ({help_cpu / base_cpu:.1f}x interpreter start)")
        for n in args.agents:
            path = Path(tmp) / f"bench-{n}.yaml"
            path.write_text(yaml.safe_dump(decision_file(n)))
            trees: list[tuple[str, list[str], dict[str, str] | None, Path | None]] = [("", [deploy], None, None)]
            if args.before:
                # `-m` puts the working directory first on sys.path: each tree runs from its own root
                module = [sys.executable, "-m", "agentdeploy"]
                before = args.before.resolve()
                trees = [("before: ", module, {**os.environ, "PYTHONPATH": str(before)}, before), ("after:  ", module, None, ROOT)]
            digests = set()
            for label, command, env, cwd in trees:
                plan, rc, rss, cpu, digest = timed([*command, "plan", str(path), "--json"], args.runs, env, cwd)
                digests.add(digest)
                print(f"{label}deploy plan ({n} agents): {plan * 1000:8.1f} ms wall, {cpu * 1000:8.1f} ms CPU (exit {rc}); "
                      f"{(cpu - base_cpu) / n * 1000:.2f} ms CPU per agent; peak RSS {rss:,.0f} MB; plan sha256 {digest[:12]}", flush=True)
            if args.before:
                print(f"plans identical ({n} agents): {'yes' if len(digests) == 1 else 'NO'}")
            if args.stages:
                stages = subprocess.run([sys.executable, "-c", STAGES, str(path)], capture_output=True, text=True, check=True, cwd=ROOT)
                print(f"stages ({n} agents): {stages.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
