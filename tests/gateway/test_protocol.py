"""serving/protocol/: OpenAI <-> Anthropic requests, stream events, whole responses, usage.

Most cases go round trip (an upstream stream parsed, then written in the client's protocol), so
parsers and writers are tested together here.
"""

import orjson
import pytest

from agentdeploy.serving.pricing import Usage
from agentdeploy.serving.protocol.parsers import AnthropicStreamParser, MalformedChunk, OpenAIStreamParser
from agentdeploy.serving.protocol.requests import (
    TranslationError,
    anthropic_to_openai_request,
    openai_passthrough_request,
    openai_to_anthropic_request,
)
from agentdeploy.serving.protocol.writers import AnthropicStreamWriter, Collector, OpenAIStreamWriter
from tests.gateway.helpers import sse_events


def test_openai_request_to_anthropic_moves_system_tools_and_tool_results():
    body = {
        "messages": [
            {"role": "system", "content": "You route tickets."},
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"id": 7}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
            {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "stop": "END",
        "temperature": 1.7,
    }
    out = openai_to_anthropic_request(body, "claude-haiku-4-5", 100)
    assert out["system"] == [{"type": "text", "text": "You route tickets."}]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"id": 7}}]
    # tool result and the following user text merge into one user turn (roles must alternate)
    assert out["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_1", "content": "shipped"}
    assert out["messages"][2]["content"][1] == {"type": "text", "text": "thanks"}
    assert out["tools"] == [{"name": "lookup", "description": "find", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "any"}
    assert out["stop_sequences"] == ["END"]
    assert out["temperature"] == 1.0  # Anthropic's range is 0..1
    assert out["max_tokens"] == 100
    assert out["stream"] is True
    assert out["model"] == "claude-haiku-4-5"


def test_anthropic_request_to_openai_keeps_tool_round_trip_and_drops_cache_control():
    body = {
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "toolu_1", "name": "wx", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "rain"}]}]},
        ],
        "tools": [{"name": "wx", "description": "weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "tool", "name": "wx"},
        "stop_sequences": ["##"],
    }
    out = anthropic_to_openai_request(body, "tiny", 50)
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}
    assert out["messages"][2]["tool_calls"][0]["function"] == {"name": "wx", "arguments": '{"city":"Oslo"}'}
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"}
    assert out["tools"][0]["function"]["parameters"] == {"type": "object"}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "wx"}}
    assert out["stop"] == ["##"]
    assert out["stream_options"] == {"include_usage": True}
    assert b"cache_control" not in orjson.dumps(out)


def test_openai_passthrough_strips_cache_control_and_forces_usage():
    body = {"model": "x", "max_completion_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]}
    out = openai_passthrough_request(body, "served", 9)
    assert "max_completion_tokens" not in out
    assert out["max_tokens"] == 9
    assert out["model"] == "served"
    assert out["stream_options"] == {"include_usage": True}
    assert b"cache_control" not in orjson.dumps(out)
    assert "cache_control" in body["messages"][0]["content"][0]  # the client's body is untouched


def test_unsupported_content_is_a_translation_error():
    with pytest.raises(TranslationError, match="input_audio"):
        openai_to_anthropic_request({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "m", 1)


ANTHROPIC_STREAM = [
    {"type": "message_start", "message": {"id": "msg_1", "model": "claude-haiku-4-5", "usage": {"input_tokens": 11, "cache_creation_input_tokens": 4100, "cache_read_input_tokens": 0, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 4100}, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "wx", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
]


def _events(parser, payloads):
    out = []
    for p in payloads:
        out += parser.feed(orjson.dumps(p) if not isinstance(p, bytes) else p)
    return out


def test_anthropic_stream_to_openai_chunks_with_tool_call_and_usage():
    parser = AnthropicStreamParser()
    events = _events(parser, ANTHROPIC_STREAM)
    assert parser.usage.cache_write_1h == 4100
    assert parser.usage.output_tokens == 7
    assert parser.usage.input_tokens == 11
    w = OpenAIStreamWriter("claude-haiku-4-5", include_usage=True)
    text = (w.head() + b"".join(w.event(e) for e in events) + w.end(parser.usage)).decode()
    chunks = [d for _, d in sse_events(text)]
    assert chunks[-1] == "[DONE]"
    usage = chunks[-2]["usage"]
    assert usage == {"prompt_tokens": 4111, "completion_tokens": 7, "total_tokens": 4118, "prompt_tokens_details": {"cached_tokens": 0}}
    deltas = [c["choices"][0] for c in chunks[:-2]]
    assert deltas[1]["delta"] == {"content": "Hi"}
    assert deltas[2]["delta"]["tool_calls"][0] == {"index": 0, "id": "toolu_9", "type": "function", "function": {"name": "wx", "arguments": ""}}
    args = "".join(d["delta"]["tool_calls"][0]["function"]["arguments"] for d in deltas[3:5])
    assert args == '{"city":"Oslo"}'
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_openai_stream_to_anthropic_events_in_api_order():
    chunks = [
        {"id": "c", "model": "tiny", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {"id": "c", "model": "tiny", "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
        {"id": "c", "model": "tiny", "choices": [{"index": 0, "delta": {"content": " you"}, "finish_reason": None}]},
        {"id": "c", "model": "tiny", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"id": "c", "model": "tiny", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 16}}},
    ]
    parser = OpenAIStreamParser()
    events = _events(parser, chunks + [b"[DONE]"])
    assert events[-1] == ("done",)
    w = AnthropicStreamWriter("tiny", 99)
    text = (w.head(parser.usage) + b"".join(w.event(e) for e in events) + w.end(parser.usage)).decode()
    names = [n for n, _ in sse_events(text)]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    delta = sse_events(text)[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["input_tokens"] == 4
    assert delta["usage"]["cache_read_input_tokens"] == 16
    assert delta["usage"]["output_tokens"] == 2


def test_collector_builds_both_response_shapes():
    parser = AnthropicStreamParser()
    c = Collector()
    for e in _events(parser, ANTHROPIC_STREAM):
        c.event(e)
    oa = c.openai_body("claude-haiku-4-5", parser.usage)
    assert oa["choices"][0]["message"]["content"] == "Hi"
    assert oa["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "wx", "arguments": '{"city":"Oslo"}'}
    assert oa["choices"][0]["finish_reason"] == "tool_calls"
    assert oa["model"] == "claude-haiku-4-5"
    an = c.anthropic_body("claude-haiku-4-5", parser.usage)
    assert an["content"][1] == {"type": "tool_use", "id": "toolu_9", "name": "wx", "input": {"city": "Oslo"}}
    assert an["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] == 4100


def test_stop_sequence_from_vllm_maps_to_stop_sequence():
    parser = OpenAIStreamParser()
    events = _events(parser, [{"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "##"}]}])
    assert ("finish", "stop_sequence", "##") in events


@pytest.mark.parametrize("bad", [b'{"id": "x", "choices": [{"delta"', b'{"id": "x"}', b"not json"])
def test_malformed_openai_chunks_raise(bad):
    with pytest.raises(MalformedChunk):
        OpenAIStreamParser().feed(bad)


def test_in_band_errors_in_each_protocol():
    oa = OpenAIStreamWriter("m", False).error("upstream_error", "boom")
    assert orjson.loads(oa[6:])["error"]["message"] == "boom"
    an = AnthropicStreamWriter("m", 1).error("api_error", "boom").decode()
    assert sse_events(an) == [("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})]
    usage = Usage(input_tokens=1, output_tokens=2, reported=True)
    assert b"[DONE]" in OpenAIStreamWriter("m", False).end(usage)
