"""Context windows: a conversation's largest request, output room included, must fit the model.

The last turn is the largest: the static prefix, the history the profile re-sends, the turn's own
input, and room for `max_tokens` of output. Both the Claude API (input + max_tokens over the
window is a validation error) and vLLM (prompt + max_tokens over max_model_len) reject it, so a
model whose window is smaller is no candidate at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentdeploy.planner.catalog import ClaudeModel, OpenModel
from agentdeploy.planner.spec import AgentDecision, Profile

MAX_TOKENS_ROUND = 16
#: vLLM's max_tokens cap on the fleet (the gateway's limit per request).
GPU_MAX_TOKENS = 32768


def max_tokens_for(profile: Profile, cap: int, margin: float) -> int:
    """p99 output x margin, rounded up to a multiple of 16, capped at the model's output limit."""
    raw = math.ceil(profile.p99_output * margin / MAX_TOKENS_ROUND) * MAX_TOKENS_ROUND
    return min(raw, cap)


@dataclass(frozen=True)
class RequestTokens:
    """Token counts of one request, by where they come from."""

    static_prefix: int
    history: int
    new_input: int
    max_tokens: int

    @property
    def total(self) -> int:
        return self.static_prefix + self.history + self.new_input + self.max_tokens

    def words(self) -> str:
        return (
            f"{self.total:,} tokens: static prefix {self.static_prefix:,} + history {self.history:,} + "
            f"input {self.new_input:,} + max_tokens {self.max_tokens:,}"
        )


def largest_request(profile: Profile, max_tokens: int) -> RequestTokens:
    history = (profile.turns - 1) * (profile.input_tokens_per_turn + profile.output_tokens_per_turn) if profile.resend_history else 0
    return RequestTokens(profile.static_prefix_tokens, history, profile.input_tokens_per_turn, max_tokens)


def planned_request(profile: Profile, cap: int, margin: float) -> RequestTokens:
    """The largest request with the max_tokens the planner would set under this output cap."""
    return largest_request(profile, max_tokens_for(profile, cap, margin))


def misfit(context_tokens: int, request: RequestTokens) -> str | None:
    """Why a model with this context window cannot serve the request, or None when it fits."""
    if request.total <= context_tokens:
        return None
    return f"its {context_tokens:,}-token context cannot hold the largest request ({request.words()})"


def claude_misfit(agent: AgentDecision, model: ClaudeModel, margin: float) -> str | None:
    request = planned_request(agent.profile, model.max_output_tokens, margin)
    return misfit(model.context_tokens, request)


def open_misfit(agent: AgentDecision, model: OpenModel, margin: float) -> str | None:
    request = planned_request(agent.profile, min(model.context_tokens, GPU_MAX_TOKENS), margin)
    return misfit(model.context_tokens, request)


def context_need(agent: AgentDecision, cap: int, margin: float) -> int:
    """vLLM's max_model_len: the largest request with max_tokens, with room to spare (a power of two)."""
    p = agent.profile
    need = p.static_prefix_tokens + p.turns * (p.input_tokens_per_turn + p.output_tokens_per_turn) + p.p99_output
    need = max(need, planned_request(p, cap, margin).total)
    return max(2048, 1 << math.ceil(math.log2(need * 1.25)))
