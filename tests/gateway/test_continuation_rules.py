"""The pure rules of a mid-stream continuation (serving/continuation.py): what a prefill
continuation asks for, when a broken stream may be continued, how a replay is verified, how the
parts' usage adds up. End to end: test_continuation.py (stand-ins), test_continuation_vllm.py."""

from __future__ import annotations

import orjson
import pytest

from agentdeploy.serving.continuation import Replay, ReplayMismatch, Sent, continuation_payload, refusal, summed
from agentdeploy.serving.pricing import Usage


def _payload(sent: Sent, max_tokens: int = 100, **extra) -> dict:
    first = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}], **extra}
    return orjson.loads(continuation_payload(orjson.dumps(first), sent, max_tokens))


def test_the_continuation_continues_the_text_sent_as_the_final_assistant_message():
    body = _payload(Sent(text=["Once", " upon"], chunks=2))
    assert body["messages"][-1] == {"role": "assistant", "content": "Once upon"}
    assert body["messages"][0] == {"role": "user", "content": "hi"}
    assert (body["continue_final_message"], body["add_generation_prompt"]) == (True, False)


def test_the_continuation_may_generate_only_the_tokens_still_allowed():
    body = _payload(Sent(text=["a"] * 30, chunks=30), max_tokens=100, max_completion_tokens=100)
    assert body["max_tokens"] == 70
    assert "max_completion_tokens" not in body  # one limit, the reduced one


def test_min_tokens_counts_the_tokens_already_sent():
    # vLLM suppresses the end of answer until min_tokens: the answer as a whole keeps that floor,
    # so the continuation owes only what is missing, never more than the client asked for.
    assert _payload(Sent(text=["a"] * 30, chunks=30), min_tokens=50)["min_tokens"] == 20
    assert _payload(Sent(text=["a"] * 30, chunks=30), min_tokens=10)["min_tokens"] == 0
    assert "min_tokens" not in _payload(Sent(text=["a"], chunks=1))


def test_other_request_parameters_are_kept():
    body = _payload(Sent(text=["a"], chunks=1), temperature=0.7, stop=["\n\n"], ignore_eos=True)
    assert (body["temperature"], body["stop"], body["ignore_eos"]) == (0.7, ["\n\n"], True)


@pytest.mark.parametrize(("sent", "supported", "why"), [
    (Sent(text=["a"], chunks=1), False, "the upstream cannot continue an answer (assistant prefill)"),
    (Sent(text=["a"], chunks=1, tools=True), True, "a tool call was under way"),
    (Sent(), True, "no text to continue from"),
    (Sent(text=["a"] * 8, chunks=8), True, "the answer already had every token allowed"),
])
def test_a_broken_stream_is_not_continued_when_it_cannot_be_done_honestly(sent, supported, why):
    assert refusal(sent, supported, max_tokens=8) == why


def test_a_broken_stream_with_text_and_tokens_left_may_be_continued():
    assert refusal(Sent(text=["a"] * 7, chunks=7), True, max_tokens=8) == ""


def test_sent_reads_text_tools_and_the_finish_from_the_events():
    sent = Sent()
    sent.see([("start", "id", "m"), ("text", 0, "Hel"), ("text", 0, "lo")])
    assert (sent.joined, sent.chunks, sent.tools, sent.finished) == ("Hello", 2, False, False)
    sent.see([("tool_start", 1, "call_1", "f"), ("finish", "tool_use", None)])
    assert (sent.tools, sent.finished) == (True, True)


def test_a_replay_drops_the_text_already_sent_whatever_its_chunking():
    replay = Replay("Hello wor")
    assert replay.take("He") == ""
    assert replay.take("llo w") == ""
    assert replay.take("orld!") == "ld!"  # the verified prefix ends inside a chunk
    assert replay.take(" More") == " More"


def test_a_replay_that_differs_from_the_text_sent_is_refused():
    replay = Replay("Hello")
    assert replay.take("He") == ""
    with pytest.raises(ReplayMismatch):
        replay.take("LLO")


def test_a_prefill_continuation_sums_to_one_answer():
    # The continuation's prompt held the 5 tokens already sent: output, not input.
    rest = Usage(input_tokens=15, output_tokens=7, reported=True, final=True)
    total = summed(10, 5, rest)
    assert (total.input_tokens, total.output_tokens, total.final) == (10, 12, True)


def test_before_the_continuation_reports_usage_the_first_part_stands():
    total = summed(10, 5, Usage())
    assert (total.input_tokens, total.output_tokens, total.final) == (10, 5, False)
