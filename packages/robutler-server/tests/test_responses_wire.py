"""The Responses <-> chat translation, without a server: input items to chat messages, chunks
to stream events, and the well-formedness check itself."""

import copy

import pytest

from robutler_core.errors import BadRequestError
from robutler_core.testing import finish_chunks, text_chunks, tool_call_chunks
from robutler_server.responses_schemas import ResponsesRequest
from robutler_server.responses_wire import (
    ResponseEvents,
    chat_messages,
    chat_params,
    input_items,
    response_object,
    response_usage,
)
from robutler_server.testing import check_response_events


def messages(items):
    return chat_messages(input_items(ResponsesRequest.model_validate({"input": items})))


def test_items_become_a_valid_chat_conversation():
    got = messages([
        {"role": "system", "content": [{"type": "input_text", "text": "Be "}, {"type": "input_text", "text": "brief."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Look:"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "search", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "ask", "arguments": '{"q": 1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "yes"}]},
        {"type": "function_call", "call_id": "call_3", "name": "search", "arguments": "{}"},
    ])
    assert got == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{}"}},
            {"id": "call_2", "type": "function", "function": {"name": "ask", "arguments": '{"q": 1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        {"role": "tool", "tool_call_id": "call_2", "content": "yes"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "search", "arguments": "{}"}}]},
    ]


def test_input_items_get_ids_and_parts():
    items = input_items(ResponsesRequest.model_validate({"input": "hi"}))
    assert items == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}],
                      "id": items[0]["id"], "status": "completed"}]
    assert items[0]["id"].startswith("msg_")


@pytest.mark.parametrize("item, param", [
    ({"role": "system", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}, "input.0.content.0.type"),
    ({"role": "user", "content": [{"type": "input_file", "file_url": "https://x/y.pdf"}]}, "input.0.content.0.file_url"),
    ({"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "u"}]},
     "input.0.output.0.type"),
])
def test_content_a_chat_message_cannot_carry_is_400(item, param):
    with pytest.raises(BadRequestError) as info:
        messages([item])
    assert info.value.param == param


def test_parameters_in_chat_terms():
    body = ResponsesRequest.model_validate({
        "input": "x", "max_output_tokens": 9, "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_object"}, "verbosity": "low"}, "reasoning": {"effort": "low"},
        "top_logprobs": 2, "metadata": {"a": "b"}, "store": False, "seed": 3})
    assert chat_params(body) == {
        "max_completion_tokens": 9, "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_object"}, "verbosity": "low", "reasoning_effort": "low",
        "top_logprobs": 2, "logprobs": True, "seed": 3}


def test_usage_in_responses_terms():
    assert response_usage({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                           "prompt_tokens_details": {"cached_tokens": 6},
                           "completion_tokens_details": {"reasoning_tokens": 2}}) == {
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 6}, "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 14}


def translate(chunks, finish="stop"):
    events = ResponseEvents(response_object(ResponsesRequest.model_validate({"input": "x"}), "resp_1", "agent"))
    out = events.start()
    for chunk in chunks:
        out += events.chunk(chunk)
    return out + events.finish(finish)


USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_interleaved_calls_and_late_text_stay_well_formed():
    a, b = tool_call_chunks([("search", {"q": "paris"}), ("ask", {"q": "when"})], pieces=2)[0:3], \
        tool_call_chunks([("search", {"q": "paris"}), ("ask", {"q": "when"})], pieces=2)[3:]
    chunks = [a[0], b[0], a[1], b[1], a[2], b[2], *text_chunks("done"), *finish_chunks("tool_calls", USAGE)]
    response = check_response_events(translate(chunks))
    assert [item["type"] for item in response["output"]] == ["function_call", "function_call", "message"]
    assert [item["arguments"] for item in response["output"][:2]] == ['{"q": "paris"}', '{"q": "when"}']
    assert response["output"][2]["content"][0]["text"] == "done"


def test_an_empty_answer_is_an_empty_message():
    events = translate(finish_chunks("stop", USAGE))
    response = check_response_events(events)
    assert response["output"][0]["content"][0]["text"] == ""
    assert not any(e["type"] == "response.output_text.delta" for e in events)


def test_the_check_finds_malformed_streams():
    good = translate([*text_chunks("hello"), *finish_chunks("stop", USAGE)])
    check_response_events(good)

    def broken(change):
        events = copy.deepcopy(good)
        change(events)
        return events

    def renumber(events):
        for i, event in enumerate(events):
            event["sequence_number"] = i
        return events

    cases = {
        "sequence numbers": broken(lambda e: e[3].update(sequence_number=9)),
        "never done": renumber(broken(lambda e: e.pop(next(i for i, x in enumerate(e) if x["type"] == "response.output_item.done")))),
        "outside an open part": renumber(broken(lambda e: e.insert(2, {**e[4], "content_index": 1}))),
        "no usage": broken(lambda e: e[-1]["response"].update(usage=None)),
        "output differs": broken(lambda e: e[-1]["response"].update(output=[])),
        "response.completed": renumber(broken(lambda e: e.insert(3, dict(e[-1])))),
    }
    for problem, events in cases.items():
        with pytest.raises(AssertionError, match=problem):
            check_response_events(events)
