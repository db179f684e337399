"""The gateway in front of a REAL vLLM server on CPU (tiny model) with the Claude emulator behind.

Covers what a stand-in cannot prove: vLLM's real stream format and /metrics, a replica killed
mid-load, a replica frozen mid-stream (SIGSTOP: a true stall and a true slow first token), a
flapping replica, and overload from real in-flight requests.
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
import threading
import time

import httpx
import pytest

from tests.gateway.helpers import (
    GPU_KEY,
    chat,
    env_for,
    gateway_config,
    messages,
    metric_value,
    openai_text,
    sse_events,
    stream_chat,
)

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

SERVED = "tiny-llama"


def _config(claude, urls, max_load=None, **gpu):
    agent = {"max_tokens_default": 32, "max_tokens_cap": 480,
             "chain": [{"upstream": "vllm", "model": SERVED, "ttft_timeout_s": gpu.pop("ttft", 8.0)},
                       {"upstream": "anthropic", "model": "claude-haiku-4-5"}], **gpu}
    return gateway_config(claude.base_url, replicas=urls, vllm_model=SERVED, gpu_agent=agent,
                          vllm={"stall_timeout_s": 2.0, "connect_timeout_s": 1.0, "metrics_poll_s": 0.25,
                                **({"max_load_per_replica": max_load} if max_load else {})})


@pytest.fixture
def frozen():
    """SIGSTOP a server's whole process group, and always SIGCONT it afterwards."""
    stopped = []

    def freeze(server):
        server.process.signal_group(signal.SIGSTOP)
        stopped.append(server)

    def thaw(server):
        server.process.signal_group(signal.SIGCONT)
        stopped.remove(server)

    def forget(server):
        stopped.remove(server)  # killed while frozen: nothing to thaw

    freeze.thaw = thaw
    freeze.forget = forget
    yield freeze
    for server in list(stopped):
        server.process.signal_group(signal.SIGCONT)


def test_real_vllm_serves_both_protocols_and_reports_load(vllm_server, claude_emulator, gateway_factory):
    gw = gateway_factory(_config(claude_emulator, [vllm_server.base_url]), env=env_for(claude_emulator))
    r = chat(gw.url, GPU_KEY, max_tokens=8, ignore_eos=True)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == SERVED
    assert r.json()["usage"]["completion_tokens"] == 8
    r, text = stream_chat(gw.url, GPU_KEY, max_tokens=8, ignore_eos=True, stream_options={"include_usage": True})
    events = sse_events(text)
    assert r.headers["x-agentdeploy-model"] == SERVED
    assert events[-1][1] == "[DONE]"
    assert events[-2][1]["usage"]["completion_tokens"] == 8
    r = messages(gw.url, GPU_KEY, max_tokens=6, system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
    assert r.status_code == 200, r.text
    assert r.json()["model"] == SERVED
    assert r.json()["usage"]["output_tokens"] >= 1
    assert claude_emulator.requests() == []
    m = gw.metrics()
    samples = [ln for ln in m.splitlines() if ln.startswith("agentdeploy_gateway_circuit_state{") and 'upstream="vllm"' in ln]
    assert len(samples) == 1 and float(samples[0].rsplit(" ", 1)[1]) == 0, samples  # one replica, closed
    assert any(ln.startswith("agentdeploy_gateway_replica_load{") for ln in m.splitlines())


def test_frozen_replica_slow_first_token_falls_back_then_stall_mid_stream_errors(vllm_server, claude_emulator, gateway_factory, frozen):
    gw = gateway_factory(_config(claude_emulator, [vllm_server.base_url], ttft=1.0), env=env_for(claude_emulator))
    assert chat(gw.url, GPU_KEY, max_tokens=4).json()["model"] == SERVED  # warm
    frozen(vllm_server)
    try:
        t0 = time.perf_counter()
        r, text = stream_chat(gw.url, GPU_KEY, max_tokens=8)
        assert r.headers["x-agentdeploy-model"] == "claude-haiku-4-5"
        assert time.perf_counter() - t0 < 4.0
        assert sse_events(text)[-1][1] == "[DONE]"
    finally:
        frozen.thaw(vllm_server)
    # Wait for the breaker to let traffic back, then freeze it mid-stream. The client's view lags
    # vLLM's (a fast replica may finish all 400 tokens before the client has read 3), so a freeze
    # that landed after the end is no test: set the scene again, at most three times.
    for _attempt in range(3):
        deadline = time.monotonic() + 20
        while chat(gw.url, GPU_KEY, max_tokens=2).json()["model"] != SERVED:
            assert time.monotonic() < deadline, "traffic never returned to the thawed replica"
            time.sleep(0.3)
        # After a step vLLM's engine and worker busy-wait for a second; a stream started then
        # tends to reach the client in one burst at its end. Started after, it flows.
        time.sleep(1.5)
        box: dict = {"lines": []}

        def reader(box: dict = box) -> None:
            body = {"model": "x", "stream": True, "max_tokens": 400, "ignore_eos": True, "messages": [{"role": "user", "content": "tell me"}]}
            with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=30) as resp:
                box["model"] = resp.headers.get("x-agentdeploy-model")
                for line in resp.iter_lines():
                    box["lines"].append(line)

        t = threading.Thread(target=reader)
        t.start()
        deadline = time.monotonic() + 20
        while not any('"content"' in ln for ln in box["lines"]) and time.monotonic() < deadline:
            time.sleep(0.005)
        frozen(vllm_server)
        try:
            t.join(15)
            assert not t.is_alive()
        finally:
            frozen.thaw(vllm_server)
        events = sse_events("\n\n".join(box["lines"]))
        assert box["model"] == SERVED
        if events and events[-1][1] != "[DONE]":
            break  # the freeze landed mid-stream
    else:
        pytest.fail("three freezes all landed after the stream had ended")
    assert "stall" in events[-1][1]["error"]["message"], events[-3:]  # frozen mid-stream: explicit error
    assert "[DONE]" not in [d for _, d in events]


def test_killed_replica_mid_load_loses_no_request(vllm_factory, claude_emulator, gateway_factory, frozen):
    claude_emulator.configure(output_tokens=20)
    # The kill must land while a stream is flowing through the gateway; _kill_mid_load only kills
    # once it has seen one there (vLLM frozen, so nothing more can arrive). If every stream
    # ended before that, the scene is set up again on a fresh server, never counted as a pass.
    for _attempt in range(3):
        server = vllm_factory(SERVED, extra_args=("--max-num-seqs", "2"))
        gw = gateway_factory(_config(claude_emulator, [server.base_url]), env=env_for(claude_emulator))
        scene = _kill_mid_load(server, gw, frozen)
        if scene is not None:
            break
    else:
        pytest.fail("in three runs no stream was caught mid-way when vLLM was frozen")
    results, flowing_out, not_started_out, finished_out, late_out = scene

    assert results, "no non-streaming request ran"
    assert all(code == 200 for code, _ in results), results  # zero failed client requests
    assert any(model == "claude-haiku-4-5" for _, model in results)
    # Not started when vLLM died (the gateway had no chunk, so it had sent nothing), or sent
    # after: completed on Claude, cleanly.
    for out in not_started_out + late_out:
        events = sse_events("\n\n".join(out["lines"]))
        assert out["status"] == 200 and events[-1][1] == "[DONE]" and openai_text(events), events[-3:]
        assert out["model"] == "claude-haiku-4-5"  # kill() returns once the whole vLLM group is gone
    # Already flowing: an explicit in-band error, never a silent cut.
    for out in flowing_out:
        events = sse_events("\n\n".join(out["lines"]))
        assert out["model"] == SERVED
        last = events[-1][1]
        assert isinstance(last, dict) and "error" in last, events[-3:]
        assert "[DONE]" not in [d for _, d in events]
    for out in finished_out:  # ended before the kill: vLLM's whole answer
        events = sse_events("\n\n".join(out["lines"]))
        assert out["model"] == SERVED
        assert events[-1][1] == "[DONE]"


def _kill_mid_load(server, gw, frozen) -> tuple[list, list, list, list, list] | None:
    """Load the gateway (3 non-streaming workers, 6 long streams, two sequences at a time in
    vLLM), and SIGKILL the whole vLLM group while a stream is flowing; then send 3 more streams.

    A client's view of a stream lags vLLM's (on a 2-core machine vLLM's front end may deliver a
    whole answer in one burst), so "flowing" is judged with vLLM frozen: after a short settle the
    clients hold everything that was sent, and a stream with content but no end is certainly
    mid-way. Returns (non-streaming results, flowing, not started, finished, late) as they stood
    at the kill, or None when every stream ended before one was caught mid-way.
    """
    stop = threading.Event()
    results: list[tuple[int, str]] = []

    def non_streaming_worker():
        while not stop.is_set():
            r = chat(gw.url, GPU_KEY, max_tokens=64, ignore_eos=True, timeout=60)
            results.append((r.status_code, r.headers.get("x-agentdeploy-model", "")))

    def stream_once(out: dict) -> dict:
        body = {"model": "x", "stream": True, "max_tokens": 480, "ignore_eos": True, "messages": [{"role": "user", "content": "a long answer"}]}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=60) as resp:
            out["status"] = resp.status_code
            out["model"] = resp.headers.get("x-agentdeploy-model")
            for line in resp.iter_lines():
                out["lines"].append(line)
        return out

    def started(out: dict) -> bool:
        return any('"content"' in ln for ln in list(out["lines"]))

    def ended(out: dict) -> bool:
        return "data: [DONE]" in out["lines"]

    time.sleep(1.5)  # vLLM's engine leaves its post-step busy wait: streams flow rather than burst
    with cf.ThreadPoolExecutor(16) as ex:
        workers = [ex.submit(non_streaming_worker) for _ in range(3)]
        outs: list[dict] = [{"lines": []} for _ in range(6)]
        streams = [ex.submit(stream_once, out) for out in outs]
        caught = False
        deadline = time.monotonic() + 90
        while not caught and not all(f.done() for f in streams) and time.monotonic() < deadline:
            if not any(started(o) and not ended(o) for o in outs):
                time.sleep(0.005)
                continue
            frozen(server)
            time.sleep(0.4)  # well inside the gateway's 2 s stall limit
            flowing = [o for o in outs if started(o) and not ended(o)]
            caught = bool(flowing)
            if caught:
                snapshot = {id(o): ("flowing" if o in flowing else "finished" if ended(o) else "not_started") for o in outs}
                server.kill()  # SIGKILL the whole (frozen) vLLM group while those streams flow
                frozen.forget(server)
            else:
                frozen.thaw(server)
        if not caught:
            stop.set()
            for f in workers + streams:
                f.result(timeout=90)
            return None
        late = [ex.submit(stream_once, {"lines": []}) for _ in range(3)]  # streams that had not started yet
        time.sleep(1.5)
        stop.set()
        for w in workers:
            w.result(timeout=90)
        for f in streams:
            f.result(timeout=90)
        by_state = {state: [o for o in outs if snapshot[id(o)] == state] for state in ("flowing", "not_started", "finished")}
        return results, by_state["flowing"], by_state["not_started"], by_state["finished"], [f.result(timeout=90) for f in late]


def test_prompt_over_vllms_context_moves_to_the_larger_context_model(vllm_server, claude_emulator, gateway_factory):
    """vLLM's own 400s for a prompt over its context (its character bound, then its token count)
    are context-length failures: not retried on vLLM, not returned to the client, but sent to
    the next model whose context holds the prompt."""
    gw = gateway_factory(_config(claude_emulator, [vllm_server.base_url]), env=env_for(claude_emulator))
    prompts = {"input_text": " ".join(f"word{i} lorem ipsum" for i in range(800)),  # over the character bound
               "input_tokens": " ".join(f"w{i}" for i in range(600))}  # under it, but over 512 tokens
    for param, prompt in prompts.items():
        direct = httpx.post(vllm_server.base_url + "/v1/chat/completions", timeout=30,
                            json={"model": SERVED, "max_tokens": 4, "messages": [{"role": "user", "content": prompt}]})
        assert direct.status_code == 400 and direct.json()["error"]["param"] == param, direct.text
        assert "maximum context length" in direct.json()["error"]["message"]  # what vLLM really says
        r = chat(gw.url, GPU_KEY, prompt, max_tokens=4)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "claude-haiku-4-5"
        assert r.headers["x-agentdeploy-fallback"] == "vllm:context_length"
    assert len(claude_emulator.requests()) == 2


def test_overload_from_real_in_flight_requests_spills_to_claude(vllm_server, claude_emulator, gateway_factory):
    """One long stream holds the only slot (max_load 1); requests sent while it is in flight spill
    to Claude. The overlap is made certain, not hoped for: vLLM's engine is paused (its API server
    stays live and keeps answering /metrics) before the long stream is sent, so that request is
    held in flight, and the others go only once the gateway counts it on the replica. Waiting for the client to
    see a token instead is not proof: on 2 cores vLLM may deliver a whole answer in one burst."""
    gw = gateway_factory(_config(claude_emulator, [vllm_server.base_url], max_load=1, ttft=30.0), env=env_for(claude_emulator))
    box: dict = {}

    def long_stream() -> None:
        body = {"model": "x", "stream": True, "max_tokens": 480, "ignore_eos": True, "messages": [{"role": "user", "content": "go"}]}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {GPU_KEY}"}, timeout=90) as resp:
            box["model"] = resp.headers.get("x-agentdeploy-model")
            box["events"] = sse_events("\n\n".join(resp.iter_lines()))

    t = threading.Thread(target=long_stream)
    vllm_server.process.signal_children(signal.SIGSTOP)
    try:
        t.start()
        deadline = time.monotonic() + 30
        while metric_value(gw.metrics(), "agentdeploy_gateway_replica_load", upstream="vllm") < 1:
            assert time.monotonic() < deadline, "the gateway never sent the long stream to the replica"
            time.sleep(0.05)
        with cf.ThreadPoolExecutor(3) as ex:
            answers = [f.result() for f in [ex.submit(chat, gw.url, GPU_KEY, max_tokens=8, timeout=60) for _ in range(3)]]
    finally:
        vllm_server.process.signal_children(signal.SIGCONT)
    t.join(90)
    assert not t.is_alive(), "the long stream never finished after the engine resumed"
    assert [r.headers["x-agentdeploy-model"] for r in answers] == ["claude-haiku-4-5"] * 3
    assert [r.headers["x-agentdeploy-fallback"] for r in answers] == ["vllm:overload"] * 3
    assert box["model"] == SERVED, box
    assert box["events"][-1][1] == "[DONE]", box["events"][-2:]  # it resumed and completed
    m = gw.metrics()
    assert metric_value(m, "agentdeploy_gateway_fallbacks_total", agent="gpu-agent", reason="overload") >= 1
