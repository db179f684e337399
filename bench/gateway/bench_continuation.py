"""What a mid-stream continuation costs the client: the time from the break to the next token.

One gateway process (`deploy serve`), two stand-in replicas of one model (tests/gateway/
openai_standin.py: tokens `--token-ms` apart; they continue a final assistant message the way
vLLM does), the Claude emulator behind. Side by side in one run, per round, a client streams:

- `uninterrupted`: no fault; the gap between token k and token k+1 (the baseline gap);
- `cut prefill`: replica 1 drops the connection after token k; the answer is continued on
  replica 2 with `continue_final_message` (a request without a seed or temperature 0);
- `cut replay`: the same break at temperature 0: replica 2 replays the answer from the start,
  the gateway verifies the k tokens already sent and sends the rest;
- `stall prefill`: replica 1 goes silent after token k; the gateway waits `stall_timeout_s`
  (set to 0.5 s here) before it calls that a break, then continues.

The gap is measured at the client between the chunk carrying token k and the next one; the
added latency of a continuation is that gap less the baseline gap.

    python bench/gateway/bench_continuation.py --rounds 30 --break-after 20 --tokens 40 --token-ms 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.gateway.helpers import GPU_KEY, env_for, gateway_config  # noqa: E402
from tests.gateway.openai_standin import OpenAIStandin  # noqa: E402
from tests.support.claude import start_claude_thread  # noqa: E402
from tests.support.gateway import start_gateway  # noqa: E402

STALL_S = 0.5


def _gap(url: str, k: int, **body: object) -> float:
    """Seconds between the client's chunk with token k-1 (0-based) and the next text chunk."""
    payload = {"model": "gpu-agent", "stream": True, "max_tokens": 64, "messages": [{"role": "user", "content": "go"}], **body}
    stamps: list[float] = []
    text = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=30) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            obj = json.loads(line[6:])
            if "error" in obj:
                raise RuntimeError(obj["error"]["message"])
            content = ((obj.get("choices") or [{}])[0].get("delta") or {}).get("content")
            if content:
                stamps.append(time.perf_counter())
                text.append(content)
    return stamps[k] - stamps[k - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--break-after", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--token-ms", type=float, default=5.0)
    args = ap.parse_args()
    k = args.break_after
    claude = start_claude_thread()
    reps = [OpenAIStandin().start(), OpenAIStandin().start()]
    for r in reps:
        r.tokens = args.tokens
        r.token_delay_s = args.token_ms / 1000
    cfg = gateway_config(claude.base_url, replicas=[r.base_url for r in reps], log_requests=False,
                         gpu_agent={"max_tokens_cap": 64, "max_tokens_default": 64},
                         vllm={"continuation": True, "stall_timeout_s": STALL_S, "metrics_poll_s": 0},
                         # Breaks are the experiment: replica 1 must stay in rotation through all of them.
                         breaker={"failure_threshold": 10**6, "failure_rate": 1.0, "window": 10**6})
    gw = start_gateway(cfg, tempfile.mkdtemp(prefix="bench-continuation-"), env=env_for(claude))
    cases = {
        "uninterrupted": ({}, {}),
        "cut prefill": ({"cut_after": k}, {}),
        "cut replay": ({"cut_after": k}, {"temperature": 0}),
        "stall prefill": ({"stall_after": k, "stall_s": 5}, {}),
    }
    gaps: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(3):
            _gap(gw.url, k)  # warm: connections pooled, code paths hot
        for _ in range(args.rounds):
            for name, (fault, body) in cases.items():
                if fault:
                    reps[0].fault(**fault)  # the first attempt goes to replica 1 (listed first, equal load)
                seen = len(reps[1].requests)
                gaps[name].append(_gap(gw.url, k, **body))
                # Proof the case ran as named: a break was continued on replica 2 exactly when injected.
                assert len(reps[1].requests) == seen + bool(fault), name
                if fault:
                    assert bool(reps[1].requests[-1]["body"].get("continue_final_message")) == ("prefill" in name), name
    finally:
        gw.stop()
        for r in reps:
            r.stop()
    base = statistics.median(gaps["uninterrupted"])
    print(f"rounds {args.rounds}, break after token {k} of {args.tokens}, tokens {args.token_ms:g} ms apart, stall_timeout_s {STALL_S:g}")
    print("| case | gap p50 (ms) | gap max (ms) | added p50 (ms) |")
    print("|---|---|---|---|")
    for name, xs in gaps.items():
        p50 = statistics.median(xs)
        print(f"| {name} | {p50 * 1000:.2f} | {max(xs) * 1000:.2f} | {(p50 - base) * 1000:.2f} |")


if __name__ == "__main__":
    main()
