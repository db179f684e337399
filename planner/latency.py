"""Latency estimates: p95 time to first token and to the full answer.

API models: the catalog's p95 TTFT plus the prefill of the prompt (the catalog's seconds per
1,000 input tokens), then the p95 output at the model's decode speed. GPU replicas: the queueing
part of the first token from the instance's throughput curve at the concurrency the plan runs
each replica at, plus the prompt's prefill at the replica's prefill rate, so a long prompt or a
fleet sized too thin shows up as a latency miss, not a surprise in production. The p95 prompt is
the conversation's largest (the last turn: static prefix, the history it re-sends, its input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from agentdeploy.planner.catalog import ClaudeModel, InstancePerf
from agentdeploy.planner.spec import Measure, Profile

#: Network + gateway time added to every self-hosted request (EST: same-region hop, gateway < 5 ms).
GPU_NETWORK_S = 0.05
#: Batch API: "most batches finish in less than 1 hour"; hard limit 24 h (OFFICIAL batch docs).
BATCH_P95_S = 3600.0
BATCH_LIMIT_S = 86400.0


@dataclass(frozen=True)
class Estimate:
    ttft_p95_s: float
    total_p95_s: float

    def measured(self, measure: Measure) -> float:
        return self.ttft_p95_s if measure == "first_token" else self.total_p95_s


def p95_output_tokens(profile: Profile) -> float:
    """p95 of output per turn, between the mean and the p99 (EST: 80% of the way)."""
    mean, p99 = profile.output_tokens_per_turn, profile.p99_output
    return mean + 0.8 * (p99 - mean)


def largest_prompt_tokens(profile: Profile) -> int:
    """The last turn's prompt: static prefix, re-sent history, new input."""
    history = (profile.turns - 1) * (profile.input_tokens_per_turn + profile.output_tokens_per_turn) if profile.resend_history else 0
    return profile.static_prefix_tokens + history + profile.input_tokens_per_turn


def mean_prompt_tokens(profile: Profile) -> float:
    """The average turn's prompt, for the compute a replica spends per request."""
    history = (profile.turns - 1) / 2 * (profile.input_tokens_per_turn + profile.output_tokens_per_turn) if profile.resend_history else 0.0
    return profile.static_prefix_tokens + history + profile.input_tokens_per_turn


def api_estimate(model: ClaudeModel, profile: Profile) -> Estimate:
    ttft = model.ttft_p95_s + largest_prompt_tokens(profile) / 1000 * model.ttft_s_per_1k_input_tokens
    return Estimate(round(ttft, 3), round(ttft + p95_output_tokens(profile) / model.output_tokens_per_s, 3))


def per_stream_speed(perf: InstancePerf, concurrency: float) -> float:
    """Tokens/s one stream sees when a replica runs `concurrency` streams (linear to the knee)."""
    c = max(1.0, concurrency)
    if c >= perf.knee_concurrency:
        return perf.aggregate_tok_s / c
    frac = (c - 1) / max(1, perf.knee_concurrency - 1)
    aggregate = perf.single_stream_tok_s + (perf.aggregate_tok_s - perf.single_stream_tok_s) * frac
    return aggregate / c


class Prompt(NamedTuple):
    """The profile's figures a replica's latency and load read, worked out once per agent."""

    largest: int
    mean: float
    p95_output: float
    output: int


def prompt_of(profile: Profile) -> Prompt:
    return Prompt(largest_prompt_tokens(profile), mean_prompt_tokens(profile), p95_output_tokens(profile), profile.output_tokens_per_turn)


def gpu_estimate(perf: InstancePerf, profile: Profile, concurrency: float, prefill_tok_s: float) -> Estimate:
    return Estimate(*gpu_times(perf, largest_prompt_tokens(profile), p95_output_tokens(profile), concurrency, prefill_tok_s))


def gpu_times(perf: InstancePerf, largest: int, p95_output: float, concurrency: float, prefill_tok_s: float) -> tuple[float, float]:
    """(p95 first token, p95 whole answer) of a replica running `concurrency` streams."""
    c = max(1.0, concurrency)
    queue = perf.ttft_p95_s_at_knee * max(0.3, min(1.0, c / perf.knee_concurrency))
    ttft = queue + largest / prefill_tok_s + GPU_NETWORK_S
    speed = per_stream_speed(perf, c)
    return round(ttft, 3), round(ttft + p95_output / speed, 3)


def batch_estimate() -> Estimate:
    return Estimate(BATCH_P95_S, BATCH_P95_S)


def self_hosted_ttft(ceiling_s: float | None, measure: Measure, fallback_ttft_p95_s: float) -> float:
    """How long the gateway waits for a fleet's first token before falling back to Claude.

    The fallback's own p95 first token must still land inside the ceiling, so the fleet gets the
    rest. A full-response ceiling also has the answer to stream: the fleet gets at most half of
    it; never under a quarter second, and 30 s where there is no ceiling.
    """
    if ceiling_s is None:
        return 30.0
    if measure == "full_response":
        return max(0.25, min(ceiling_s / 2, ceiling_s - fallback_ttft_p95_s))
    return max(0.25, ceiling_s - fallback_ttft_p95_s)
