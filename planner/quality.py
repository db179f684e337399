"""Question 2 turned into a number: the quality floor a model must meet.

Tiers run 1 (small, routing-grade) to 5 (frontier). The floor grows with the cost of a wrong
answer and with how much the task depends on reasoning under ambiguity: small models are
genuinely good at routing, classification and extraction; the gap opens on reasoning.
Measured eval scores, when the decision file gives them, override these rules per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from agentdeploy.planner.catalog import ClaudeModel, OpenModel
from agentdeploy.planner.spec import Quality

#: task -> wrong-answer cost level -> minimum tier
FLOOR: dict[str, dict[str, int]] = {
    "routing": {"low": 1, "medium": 1, "high": 2, "critical": 3},
    "classification": {"low": 1, "medium": 1, "high": 2, "critical": 3},
    "extraction": {"low": 1, "medium": 2, "high": 3, "critical": 4},
    "qa": {"low": 2, "medium": 2, "high": 3, "critical": 4},
    "generation": {"low": 3, "medium": 4, "high": 4, "critical": 5},
    "reasoning": {"low": 3, "medium": 4, "high": 4, "critical": 5},
}


def quality_floor(quality: Quality) -> int:
    return FLOOR[quality.task][quality.cost_level]


@dataclass(frozen=True)
class Verdict:
    passes: bool
    tier: int | None
    reason: str


def judge(model_id: str, model: ClaudeModel | OpenModel, quality: Quality) -> Verdict:
    """Does `model` meet the agent's floor? Eval scores, when given for it, decide alone."""
    evals = quality.evals
    if evals is not None and model_id in evals.scores:
        score = evals.scores[model_id]
        ok = score >= evals.pass_threshold
        verb = "passes" if ok else "fails"
        return Verdict(ok, None, f"{model_id} {verb} the agent's evals ({score:.2f} vs threshold {evals.pass_threshold:.2f})")
    tier = model.quality_tier if isinstance(model, ClaudeModel) else model.task_tiers.get(quality.task)
    return _by_tier(model_id, tier, quality.task, quality_floor(quality))


@lru_cache(maxsize=4096)  # a few models x tasks x floors; the planner asks for each per agent, several times
def _by_tier(model_id: str, tier: int | None, task: str, floor: int) -> Verdict:
    if tier is None:
        return Verdict(False, None, f"{model_id} is not fit for {task} tasks")
    ok = tier >= floor
    return Verdict(ok, tier, f"{model_id} tier {tier} {'meets' if ok else 'is below'} floor {floor}")
