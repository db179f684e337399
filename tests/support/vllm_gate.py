"""A gate inside a real vLLM engine: it holds generation at a proven point, so a test can break
streams mid-answer with certainty instead of racing a fast model.

Why: the tiny test model answers 480 tokens in about a second, so "freeze the replica once the
client has text, before the answer ends" is a race on a loaded machine. With the gate, the
engine itself stops stepping once any request in its batch has `AGENTDEPLOY_VLLM_GATE_AT`
output tokens, while the file `<AGENTDEPLOY_VLLM_GATE_DIR>/closed` exists, and writes
`held.json` (each held request's output token count) when it starts holding. Removing
`closed` lets it go on. Without `closed` it does nothing: the same server answers normally.

Loaded by vLLM (`--logits-processors tests.support.vllm_gate:Gate`, the repository on
PYTHONPATH), so it imports only the standard library and vLLM. It never changes a logit: it is
argmax-invariant and its `apply` returns the logits untouched, so greedy answers are the same
with or without it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from vllm.v1.sample.logits_processor.interface import BatchUpdate, LogitsProcessor, MoveDirectionality

GATE_DIR_ENV = "AGENTDEPLOY_VLLM_GATE_DIR"
GATE_AT_ENV = "AGENTDEPLOY_VLLM_GATE_AT"
POLL_S = 0.01


class Gate(LogitsProcessor):
    """Holds the engine before a step once a request has generated the gate's token count."""

    def __init__(self, vllm_config, device, is_pin_memory) -> None:  # signature set by vLLM
        raw = os.environ.get(GATE_DIR_ENV)
        self.dir = Path(raw) if raw else None
        self.at = int(os.environ.get(GATE_AT_ENV, "1"))
        #: batch index -> the request's output token ids (vLLM appends to this very list)
        self.outputs: dict[int, list[int]] = {}

    def is_argmax_invariant(self) -> bool:
        return True

    def apply(self, logits):
        return logits

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is not None:
            self._track(batch_update)
        if self.dir is None or not (self.dir / "closed").exists():
            return
        if not any(len(out) >= self.at for out in self.outputs.values()):
            return
        counts = sorted(len(out) for out in self.outputs.values())
        tmp = self.dir / "held.json.tmp"
        tmp.write_text(json.dumps(counts))
        tmp.replace(self.dir / "held.json")
        while (self.dir / "closed").exists():
            time.sleep(POLL_S)

    def _track(self, update: BatchUpdate) -> None:
        # In the order vLLM documents: removed, added, moved.
        for index in update.removed:
            self.outputs.pop(index, None)
        for index, _params, _prompt, output in update.added:
            self.outputs[index] = output
        for a, b, direction in update.moved:
            first, second = self.outputs.pop(a, None), self.outputs.pop(b, None)
            if first is not None:
                self.outputs[b] = first
            if second is not None and direction == MoveDirectionality.SWAP:
                self.outputs[a] = second
