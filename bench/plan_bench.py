"""Time `deploy --help` and `deploy plan` (1,000 agents) as whole processes.

Side by side in one run: the bare interpreter start (`python -c pass`) is the floor every
command pays; the ratios show what agentdeploy adds on top.

    python bench/plan_bench.py [--agents 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TASKS = ["routing", "classification", "extraction", "qa", "reasoning", "generation"]


def decision_file(n: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    agents = {}
    for i in range(n):
        latency = rng.choice([{"p95_s": 3, "audience": "interactive"}, {"p95_s": 20, "audience": "interactive"}, {"p95_s": 90, "audience": "backend"}, {"audience": "batch"}])
        agents[f"agent-{i}"] = {
            "latency": latency,
            "quality": {"wrong_answer_cost": rng.choice(["low", "medium", "high"]), "task": rng.choice(TASKS)},
            "volume": {"conversations_per_month": rng.choice([500, 5_000, 50_000, 500_000]), "conversations_per_month_12m": rng.choice([1_000, 20_000, 1_000_000])},
            "profile": {"turns": rng.randint(1, 6), "input_tokens_per_turn": rng.randint(100, 5000), "output_tokens_per_turn": rng.randint(20, 1500), "static_prefix_tokens": rng.choice([0, 3000, 8000])},
        }
    return {"version": 1, "stack": {"name": "bench"}, "agents": agents}


def timed(cmd: list[str], runs: int) -> tuple[float, int]:
    samples, rc = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
        rc = proc.returncode
    return statistics.median(samples), rc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    deploy = shutil.which("deploy") or sys.exit("`deploy` is not on PATH: pip install -e . first")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(decision_file(args.agents)))
        base, _ = timed([sys.executable, "-c", "pass"], args.runs)
        helps, _ = timed([deploy, "--help"], args.runs)
        plan, rc = timed([deploy, "plan", str(path), "--json"], args.runs)
    print(f"python -c pass           : {base * 1000:8.1f} ms (median of {args.runs})")
    print(f"deploy --help            : {helps * 1000:8.1f} ms  ({helps / base:.1f}x interpreter start)")
    print(f"deploy plan ({args.agents} agents): {plan * 1000:8.1f} ms  ({plan / base:.1f}x interpreter start; exit {rc}); "
          f"{(plan - base) / args.agents * 1000:.2f} ms per agent")


if __name__ == "__main__":
    main()
