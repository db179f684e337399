from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def agent_doc(**changes) -> dict:
    """A plain, valid agent entry; keyword arguments replace whole sections."""
    doc = {
        "description": "test agent",
        "latency": {"p95_s": 10, "audience": "interactive"},
        "quality": {"wrong_answer_cost": "medium", "task": "qa"},
        "volume": {"conversations_per_month": 1000},
        "profile": {"turns": 1, "input_tokens_per_turn": 2000, "output_tokens_per_turn": 800},
    }
    doc.update(copy.deepcopy(changes))
    return doc


def decision_doc(agents: dict | None = None, **stack) -> dict:
    return {"version": 1, "stack": {"name": "test", **stack}, "agents": agents or {"a": agent_doc()}}


@pytest.fixture
def write_decision(tmp_path):
    def write(doc: dict | str, name: str = "decisions.yaml") -> Path:
        path = tmp_path / name
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
        return path

    return write
