"""Requests in flight against a vLLM server, each checked for a complete answer."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import httpx

#: Several answers' worth of drain on CPU, within the tiny model's 512-token context.
ANSWER_TOKENS = 400


@dataclass
class Outcome:
    kind: str
    answer_tokens: int = ANSWER_TOKENS
    status: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    saw_done: bool = False
    error: str | None = None

    @property
    def complete(self) -> bool:
        ok = self.status == 200 and self.finish_reason == "length" and self.completion_tokens == self.answer_tokens
        return ok and (self.kind == "plain" or self.saw_done)


def _body(model: str, stream: bool, answer_tokens: int) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Draft the overnight marketing email."}],
        "max_tokens": answer_tokens,
        "ignore_eos": True,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def _run(base_url: str, model: str, outcome: Outcome) -> None:
    url = f"{base_url}/v1/chat/completions"
    timeout = httpx.Timeout(60.0, connect=5.0)
    try:
        if outcome.kind == "plain":
            r = httpx.post(url, json=_body(model, False, outcome.answer_tokens), timeout=timeout)
            outcome.status = r.status_code
            if r.status_code == 200:
                data = r.json()
                outcome.completion_tokens = data["usage"]["completion_tokens"]
                outcome.finish_reason = data["choices"][0]["finish_reason"]
            return
        with httpx.stream("POST", url, json=_body(model, True, outcome.answer_tokens), timeout=timeout) as r:
            outcome.status = r.status_code
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    outcome.saw_done = True
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage") and not chunk.get("choices"):
                    outcome.completion_tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        outcome.finish_reason = choice["finish_reason"]
    except Exception as e:  # a cut stream or refused connection is an outcome, not a crash
        outcome.error = f"{type(e).__name__}: {e}"


@dataclass
class Traffic:
    outcomes: list[Outcome] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def done_count(self) -> int:
        return sum(1 for t in self.threads if not t.is_alive())

    def join(self, timeout_s: float) -> None:
        for t in self.threads:
            t.join(timeout_s)
        assert not any(t.is_alive() for t in self.threads), "requests still running after the join timeout"


def start_traffic(base_url: str, model: str, streaming: int, plain: int, answer_tokens: int = ANSWER_TOKENS) -> Traffic:
    traffic = Traffic()
    for kind in ["stream"] * streaming + ["plain"] * plain:
        outcome = Outcome(kind, answer_tokens)
        thread = threading.Thread(target=_run, args=(base_url, model, outcome), daemon=True)
        traffic.outcomes.append(outcome)
        traffic.threads.append(thread)
        thread.start()
    return traffic


def direct_request(base_url: str, model: str) -> tuple[int | None, str | None]:
    """(status, error) of one new short request: a drained node must refuse it."""
    try:
        r = httpx.post(f"{base_url}/v1/chat/completions", timeout=40,
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        return r.status_code, None
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}: {e}"
