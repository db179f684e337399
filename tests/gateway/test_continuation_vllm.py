"""Mid-stream continuation with REAL vLLM on CPU (issue 13, item 1): two replicas of the tiny test
model serve six concurrent streams at temperature 0, and a seventh waits in the queue of one of
them; that replica dies (killed, or stalled: its engine stops and its connections stay open)
with three answers half-said and one not begun. Every stream ends with exactly the text an
uninterrupted run produces, and none with an error: the broken ones are continued by
replay-and-verify (greedy requests), the queued one is answered by the other replica, not by
the fallback model.

Every step waits for a proof, never for time: both engines are paused (SIGSTOP) until both API
servers have accepted all six requests, so each engine starts its whole share together; a gate
inside each engine (tests/support/vllm_gate.py) then holds it once a request has `GATE_AT`
tokens and says which requests it holds and how far each got; the client reads that text; only
then a seventh request joins the victim's queue, where it cannot start; only then does the
victim die and the other replica go on — its own streams, the replays of the broken ones and
the queued request side by side, under load.

Why the requests look as they do: the tiny random model's greedy choice is a token id past its
tokenizer's vocabulary (it decodes to no text), so every plain greedy answer is "". The client
narrows the choice to word tokens (vLLM's `allowed_token_ids`) and adds a `frequency_penalty`
so the greedy answer does not repeat one word: a thousand or so characters of varied text,
still deterministic. Both are ordinary request parameters the gateway passes through.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from agentdeploy.serving.continuation import Sent, continuation_payload
from tests.gateway.helpers import GPU_KEY, env_for, gateway_config, metric_value, openai_text, sse_events
from tests.support.vllm import REPO_ROOT, VllmServer

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

SERVED = "tiny-llama"
PROMPT = "tell me a story"
#: Six streams: the gateway spreads them over both replicas by load, so some break and some not.
PROMPTS = ["tell me a story", "hello there", "what is the price", "book me for tuesday",
           "route this to billing", "summarise the call"]
#: The request that is still queued on the victim when it dies.
LATE = "confirm the address"
MAX_TOKENS = 480  # the model's 512 positions less the prompt
#: The engines hold once a request has this many tokens: the client then holds that much text.
GATE_AT = 40
GATE = ["--logits-processors", "tests.support.vllm_gate:Gate"]
ACCEPTED = '"POST /v1/chat/completions HTTP/1.1" 200'
WAIT_S = 300.0  # a safety net for a starved machine: every wait below ends on a proof


def _config(claude, urls):
    agent = {"max_tokens_default": 32, "max_tokens_cap": MAX_TOKENS, "deadline_s": 600.0,
             "chain": [{"upstream": "vllm", "model": SERVED, "ttft_timeout_s": 30.0},
                       {"upstream": "anthropic", "model": "claude-haiku-4-5"}]}
    return gateway_config(claude.base_url, replicas=urls, vllm_model=SERVED, gpu_agent=agent,
                          vllm={"stall_timeout_s": 5.0, "connect_timeout_s": 1.0, "metrics_poll_s": 0.25,
                                "continuation": True})


def _word_tokens(model_dir: Path) -> list[int]:
    """Token ids that decode to a word (byte-level BPE: `Ġ` is a leading space)."""
    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    return sorted(i for tok, i in vocab.items() if re.fullmatch(r"\u0120?[A-Za-z]+", tok))


def _body(prompt: str, words: list[int]) -> dict:
    return {"model": "x", "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0, "frequency_penalty": 1.0,
            "allowed_token_ids": words, "messages": [{"role": "user", "content": prompt}]}


def _direct(url: str, body: dict) -> str:
    r = httpx.post(url + "/v1/chat/completions", json={**body, "model": SERVED, "stream": False}, timeout=300)
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def _accepted(server: VllmServer) -> int:
    """Chat requests the API server has answered or begun to stream (its access log)."""
    return server.log_path.read_text(errors="replace").count(ACCEPTED)


def _wait(what: str, done, *readers: _Reader) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        failed = [r.failure for r in readers if r.failure is not None]
        assert not failed, failed
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


class _Reader(threading.Thread):
    """One client stream through the gateway, every SSE line kept as it arrives."""

    def __init__(self, url: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.lines: list[str] = []
        self.status: int | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", self.url + "/v1/chat/completions", json=self.body, timeout=600,
                              headers={"authorization": f"Bearer {GPU_KEY}"}) as resp:
                self.status = resp.status_code
                for line in resp.iter_lines():
                    self.lines.append(line)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc

    def text_chunks(self) -> int:
        return sum(1 for ln in list(self.lines) if '"content":"' in ln and '"content":""' not in ln)


@pytest.fixture
def gated(vllm_factory, tmp_path):
    """Two replicas with the gate, started side by side: [(server, its gate folder)]."""
    pairs = []
    for name in ("victim", "other"):
        gate = tmp_path / f"gate-{name}"
        gate.mkdir()
        env = {"PYTHONPATH": str(REPO_ROOT), "AGENTDEPLOY_VLLM_GATE_DIR": str(gate),
               "AGENTDEPLOY_VLLM_GATE_AT": str(GATE_AT)}
        pairs.append((vllm_factory(SERVED, GATE, env=env, wait=False), gate))
    for server, _ in pairs:
        server.wait_ready()
    return pairs


@pytest.mark.parametrize("fault", ["kill", "stall"])
def test_streams_broken_mid_answer_under_load_end_with_the_uninterrupted_text(
        fault, gated, tiny_model_dir, claude_emulator, gateway_factory):
    words = _word_tokens(tiny_model_dir)
    (victim, victim_gate), (other, other_gate) = gated
    reference = {p: _direct(other.base_url, _body(p, words)) for p in [*PROMPTS, LATE]}
    for p, text in reference.items():
        assert len(text) > 500, (p, text)  # a real answer, not "" or a few characters
        assert _direct(victim.base_url, _body(p, words)) == text  # same model, same answer on either replica
    assert len(set(reference.values())) == len(reference)  # different answers: no stream can pass for another
    gw = gateway_factory(_config(claude_emulator, [victim.base_url, other.base_url]), env=env_for(claude_emulator))

    for gate in (victim_gate, other_gate):
        (gate / "closed").touch()
    for server in (victim, other):
        assert server.process.signal_children(signal.SIGSTOP), "no engine to pause"
    before = _accepted(victim) + _accepted(other)
    readers = [_Reader(gw.url, _body(p, words)) for p in PROMPTS]
    for r in readers:
        r.start()
    _wait("both replicas accepted the six requests", lambda: _accepted(victim) + _accepted(other) - before == len(PROMPTS), *readers)
    for server in (victim, other):
        server.process.signal_children(signal.SIGCONT)
    _wait("both engines hold", lambda: all((g / "held.json").exists() for g in (victim_gate, other_gate)), *readers)
    held = {name: json.loads((g / "held.json").read_text()) for name, g in (("victim", victim_gate), ("other", other_gate))}
    # Each engine began its whole share together: every request is held with text, none finished.
    assert sum(len(c) for c in held.values()) == len(PROMPTS), held
    assert all(1 <= n <= GATE_AT for c in held.values() for n in c), held
    # Least-loaded routing with loads the gateway counts itself (the paused engines report
    # nothing new): three and three, so the replica that dies has three streams mid-answer.
    assert len(held["victim"]) == len(held["other"]) == len(PROMPTS) // 2, held
    _wait("the client holds text of every stream", lambda: all(r.text_chunks() >= 1 for r in readers), *readers)
    # Equal loads, so the next request goes to the first replica listed: the victim, whose
    # held engine cannot start it.
    on_victim, on_other = _accepted(victim), _accepted(other)
    late = _Reader(gw.url, _body(LATE, words))
    late.start()
    _wait("a replica accepted the seventh request", lambda: _accepted(victim) + _accepted(other) > on_victim + on_other, late)
    assert (_accepted(victim), _accepted(other)) == (on_victim + 1, on_other), "the seventh request went to the other replica"
    assert late.text_chunks() == 0  # the held engine never scheduled it

    if fault == "kill":
        victim.kill()
    # "stall": the victim's engine stays held, its connections open and silent.
    (other_gate / "closed").unlink()  # the other replica goes on: its streams and the replays together
    for r in [*readers, late]:
        r.join(600)
        assert not r.is_alive(), "a stream never ended"

    for prompt, r in zip([*PROMPTS, LATE], [*readers, late], strict=True):
        assert r.failure is None, (prompt, r.failure)
        assert r.status == 200, prompt
        events = sse_events("\n\n".join(r.lines))
        assert not any(isinstance(d, dict) and "error" in d for _, d in events), (prompt, events[-3:])
        assert events[-1] == (None, "[DONE]"), prompt
        assert openai_text(events) == reference[prompt], prompt
        assert len({d["id"] for _, d in events if isinstance(d, dict) and "id" in d}) == 1, prompt
        finishes = [c["finish_reason"] for _, d in events if isinstance(d, dict)
                    for c in d.get("choices") or [] if c.get("finish_reason")]
        assert finishes == ["length"], prompt
    broken = len(held["victim"])
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_continuations_total", agent="gpu-agent", outcome="continued") == broken
    for outcome in ("refused", "broke_again", "replay_mismatch"):
        assert metric_value(m, "agentdeploy_gateway_continuations_total", agent="gpu-agent", outcome=outcome) == 0
    logged = [orjson.loads(ln) for ln in gw.log_text().splitlines() if ln.startswith("{") and '"continued"' in ln]
    assert len(logged) == broken
    assert all(line["status"] == 200 for line in logged)
    # The queued request failed before its first token on the victim and went to the other
    # replica of the same model (a retry on the same upstream), not down the chain.
    assert metric_value(m, "agentdeploy_gateway_upstream_retries_total", agent="gpu-agent") >= 1
    assert claude_emulator.requests() == []  # finished on the other replica, never on the fallback


def test_vllm_accepts_the_prefill_continuation_the_gateway_builds(vllm_server):
    """What a non-greedy continuation sends (continue_final_message, add_generation_prompt off,
    the text so far as the final assistant message, the token bounds less what was sent) is a
    request real vLLM serves, continuing that message rather than starting a new one."""
    first = {"model": SERVED, "max_tokens": 8, "min_tokens": 8, "temperature": 0, "stream": True,
             "messages": [{"role": "user", "content": PROMPT}]}
    sent = Sent(text=["Once upon a time"], chunks=4)
    payload = orjson.loads(continuation_payload(orjson.dumps(first), sent, 8))
    assert (payload["max_tokens"], payload["min_tokens"]) == (4, 4)
    r = httpx.post(vllm_server.base_url + "/v1/chat/completions", json={**payload, "stream": False}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] == 4
    # The prompt holds the prefix (continued, not answered anew): more tokens than without it.
    r0 = httpx.post(vllm_server.base_url + "/v1/chat/completions", json={**first, "stream": False}, timeout=60)
    assert body["usage"]["prompt_tokens"] > r0.json()["usage"]["prompt_tokens"]
    # Why min_tokens must shrink with max_tokens: vLLM refuses a floor above the cap.
    unreduced = {**payload, "min_tokens": first["min_tokens"], "stream": False}
    assert httpx.post(vllm_server.base_url + "/v1/chat/completions", json=unreduced, timeout=60).status_code == 400
