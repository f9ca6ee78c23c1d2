"""OpenAI chat format <-> Anthropic Messages, both ways, without a server."""

import json

import pytest

from robutler_core.errors import BadRequestError
from robutler_skill_anthropic.translate import StreamTranslator, to_anthropic_request, to_openai_completion
from robutler_core.wire import ChunkAssembler


def request(messages, tools=None, **params):
    return to_anthropic_request(messages, tools, params, model="claude-x", max_tokens=4096)


def test_system_messages_join_and_consecutive_roles_merge():
    body = request([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "there"}]},
    ], temperature=0.3, top_p=0.9, stop="END", user="u-1", max_completion_tokens=100, seed=7)
    assert body == {
        "model": "claude-x", "max_tokens": 100, "system": "Be brief.\n\nUse metric units.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}],
        "temperature": 0.3, "top_p": 0.9, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
    }


def test_images_from_data_urls_and_http_urls():
    body = request([{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}])
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_multi_turn_tool_use_keeps_ids_and_tools_and_choice_translate():
    tools = [{"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}]
    body = request([
        {"role": "user", "content": "add"},
        {"role": "assistant", "content": "Adding.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}},
            {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
        {"role": "tool", "tool_call_id": "call_2", "content": "2"},
    ], tools, tool_choice={"type": "function", "function": {"name": "add"}}, parallel_tool_calls=False)
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Adding."},
            {"type": "tool_use", "id": "call_1", "name": "add", "input": {"a": 1}},
            {"type": "tool_use", "id": "call_2", "name": "add", "input": {"a": 2}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "1"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "2"}]},
    ]
    assert body["tools"] == [{"name": "add", "description": "Add.", "input_schema": tools[0]["function"]["parameters"]}]
    assert body["tool_choice"] == {"type": "tool", "name": "add", "disable_parallel_tool_use": True}
    assert request([{"role": "user", "content": "x"}], tools, tool_choice="required")["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(("messages", "params", "param"), [
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], {}, "messages.0.content.0.type"),
    ([{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}], {},
     "messages.0.tool_calls.0.function.arguments"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}], {},
     "messages.0.content.0.image_url.url"),
    ([{"role": "wizard", "content": "x"}], {}, "messages.0.role"),
    ([{"role": "user", "content": "x"}], {"response_format": {"type": "json_object"}}, "response_format"),
])
def test_what_anthropic_cannot_express_is_a_bad_request(messages, params, param):
    with pytest.raises(BadRequestError) as error:
        request(messages, **params)
    assert error.value.param == param


def test_message_to_completion_with_tool_use_stop_reasons_and_cache_usage():
    completion = to_openai_completion({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 3},
    })
    assert completion["id"] == "msg_1"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]}
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert completion["usage"] == {"prompt_tokens": 113, "completion_tokens": 5, "total_tokens": 118,
                                   "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 3}}
    for reason, finish in [("max_tokens", "length"), ("refusal", "content_filter"), ("end_turn", "stop"),
                           ("stop_sequence", "stop")]:
        message = {"content": [{"type": "text", "text": "x"}], "stop_reason": reason, "usage": {}}
        assert to_openai_completion(message)["choices"][0]["finish_reason"] == finish


def test_stream_events_become_chunks_that_reassemble():
    events = [
        {"type": "message_start", "message": {"id": "msg_9", "model": "claude-x", "usage": {"input_tokens": 12, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sure"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_7", "name": "add", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": " 4}"}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}},
        {"type": "message_stop"},
    ]
    translator = StreamTranslator()
    chunks = [c for e in events for c in translator.feed(e)]
    assembler = ChunkAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.message() == {"role": "assistant", "content": "Sure", "tool_calls": [
        {"id": "toolu_7", "type": "function", "function": {"name": "add", "arguments": '{"a": 4}'}}]}
    assert assembler.finish_reason == "tool_calls"
    assert assembler.usage == {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}
    tool_deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert [d["index"] for d in tool_deltas] == [0, 0, 0]  # OpenAI's index counts tool calls only
    assert all(c["id"] == "msg_9" for c in chunks)
    assert json.loads(assembler.message()["tool_calls"][0]["function"]["arguments"]) == {"a": 4}
