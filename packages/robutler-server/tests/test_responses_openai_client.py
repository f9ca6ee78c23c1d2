"""The Responses API driven by the official openai client over a real loopback socket."""

import json

import httpx
import openai
import pytest

from robutler_core import Agent, Skill, hook, tool
from robutler_core.errors import AuthenticationError, RateLimitError, UpstreamError
from robutler_core.hookspecs import DROP
from robutler_core.testing import ScriptedModel, finish_chunks, text_chunks, tool_call_chunks
from robutler_server import create_app
from robutler_server.testing import check_response_events, serve_in_thread

ASK_USER = {"type": "function", "name": "ask_user", "description": "Ask the human.", "parameters": {
    "type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}}


class Calculator(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


class Locked(Skill):
    @hook("on_connection", priority=1)
    def check(self, context):
        raise AuthenticationError("missing or invalid token")


class Looping(Skill):
    @tool
    def again(self) -> str:
        """Call me again."""
        return "call again"


class FailingMidStream(ScriptedModel):
    async def chat_completion_stream(self, messages, tools=None, **params):
        for chunk in text_chunks("partial answer", pieces=2):
            yield chunk
        raise UpstreamError("provider connection dropped")


USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 8}}
SCRIPTED = ScriptedModel([])


@pytest.fixture(scope="module")
def base_url():
    agents = [
        Agent("plain", "Be helpful.", model="test"),
        Agent("calc", model="test", skills={"calc": Calculator()}),
        Agent("locked", model="test", skills={"auth": Locked()}),
        Agent("limited", model=ScriptedModel([RateLimitError("provider rate limit", retry_after=7)] * 2)),
        Agent("flaky", model=FailingMidStream([None] * 5)),
        Agent("loop", model=ScriptedModel([tool_call_chunks([("again", {})]) + finish_chunks("tool_calls", USAGE)] * 20),
              skills={"loop": Looping()}, max_turns=2),
        Agent("scripted", model=SCRIPTED),
        Agent("silent_loop", model=ScriptedModel([tool_call_chunks([("again", {})])] * 20),
              skills={"loop": Looping()}, max_turns=2, hooks={"on_chunk": lambda chunk: DROP}),
    ]
    with serve_in_thread(create_app(agents)) as url:
        yield url


def client(base_url, path="v1"):
    return openai.OpenAI(base_url=f"{base_url}/{path}", api_key="unused", max_retries=0)


def stream_events(base_url, path, body):
    """The parsed ``data`` of each SSE event, checking that ``event:`` names its type."""
    with httpx.stream("POST", f"{base_url}/{path}", json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    events = []
    for name, data in zip(lines[::2], lines[1::2]):
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


def test_plain_response(base_url):
    response = client(base_url).responses.create(model="plain", input="hello")
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == 'TestModel received: "hello"'
    assert [item.type for item in response.output] == ["message"]
    assert response.output[0].content[0].type == "output_text"
    assert response.usage.input_tokens > 0 and response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens)
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.model == "plain" and response.error is None and response.incomplete_details is None


def test_agent_route_and_input_items(base_url):
    response = client(base_url, "calc").responses.create(model="ignored", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "add please"}]}])
    assert response.output_text == "Tool results: add returned 2"  # the server-side tool turn is not output
    assert [item.type for item in response.output] == ["message"]


def test_streaming_response_reassembled(base_url):
    with client(base_url).responses.stream(model="calc", input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == "Tool results: add returned 2"
    assert [e.type for e in events][:4] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert events[-1].type == "response.completed" and final.usage.total_tokens > 0
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text
    retrieved = client(base_url).responses.retrieve(final.id)
    assert retrieved.output_text == final.output_text and retrieved.status == "completed"


@pytest.mark.parametrize("path", ["v1/responses", "calc/responses"])
def test_stream_events_are_well_formed(base_url, path):
    events = stream_events(base_url, path, {"model": "calc", "input": "hi", "tools": [ASK_USER]})
    response = check_response_events(events)
    assert [item["type"] for item in response["output"]] == ["function_call"]
    assert response["output"][0]["name"] == "ask_user"  # the mixed turn's server-side call did not run


@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_round_trip_with_previous_response_id(base_url, stream):
    c = client(base_url)
    if stream:
        with c.responses.stream(model="calc", input="hello", tools=[ASK_USER]) as events:
            first = events.get_final_response()
    else:
        first = c.responses.create(model="calc", input="hello", tools=[ASK_USER])
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "ask_user" and json.loads(call.arguments) == {"question": "a"}
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    final = c.responses.create(model="calc", previous_response_id=first.id, tools=[ASK_USER], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "42 apples"}])
    assert final.output_text == "Tool results: ask_user returned 42 apples"
    assert final.previous_response_id == first.id


def test_function_tool_round_trip_resending_the_items(base_url):
    c = client(base_url)
    first = c.responses.create(model="calc", input="hello", tools=[ASK_USER], store=False)
    call = first.output[-1]
    with pytest.raises(openai.NotFoundError):  # store=False: nothing to retrieve
        c.responses.retrieve(first.id)
    items = [{"role": "user", "content": "hello"}, call.model_dump(exclude_none=True),
             {"type": "function_call_output", "call_id": call.call_id, "output": "7"}]
    final = c.responses.create(model="calc", input=items, tools=[ASK_USER])
    assert final.output_text == "Tool results: ask_user returned 7"


def test_previous_response_id_continues_the_conversation(base_url):
    c = client(base_url)
    SCRIPTED.turns[:] = [text_chunks("Hi Ann."), text_chunks("You are Ann.")]
    first = c.responses.create(model="scripted", input="I am Ann", instructions="Answer briefly.")
    second = c.responses.create(model="scripted", input="Who am I?", previous_response_id=first.id)
    assert second.output_text == "You are Ann."
    seen = SCRIPTED.calls[-1][0]
    # the first request's instructions are not carried over (as OpenAI does)
    assert seen == [{"role": "user", "content": [{"type": "text", "text": "I am Ann"}]},
                    {"role": "assistant", "content": "Hi Ann."},
                    {"role": "user", "content": [{"type": "text", "text": "Who am I?"}]}]
    assert SCRIPTED.calls[-2][0][0] == {"role": "system", "content": "Answer briefly."}
    items = c.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["Who am I?"]
    c.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(second.id)


def test_parameters_reach_the_model(base_url):
    SCRIPTED.turns[:] = [text_chunks('{"n": 1}') + finish_chunks("stop", USAGE)]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = client(base_url).responses.create(
        model="scripted", input="x", temperature=0.5, max_output_tokens=50, metadata={"k": "v"},
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        tool_choice="none", parallel_tool_calls=False)
    params = SCRIPTED.calls[-1][2]
    assert params == {"temperature": 0.5, "max_completion_tokens": 50, "tool_choice": "none",
                      "parallel_tool_calls": False, "response_format": {"type": "json_schema", "json_schema": {
                          "name": "answer", "schema": schema, "strict": True}}}
    assert response.metadata == {"k": "v"} and response.temperature == 0.5 and response.max_output_tokens == 50
    assert response.text.format.type == "json_schema"
    assert response.usage.input_tokens == 12 and response.usage.input_tokens_details.cached_tokens == 8


@pytest.mark.parametrize("stream", [False, True])
def test_max_output_tokens_reached_is_incomplete(base_url, stream):
    SCRIPTED.turns[:] = [text_chunks("cut sh") + finish_chunks("length", USAGE)]
    body = {"model": "scripted", "input": "x", "max_output_tokens": 2}
    if stream:
        response = check_response_events(stream_events(base_url, "v1/responses", body))
        assert response["status"] == "incomplete"
    else:
        response = httpx.post(f"{base_url}/v1/responses", json=body).json()
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["content"][0]["text"] == "cut sh" and response["usage"]["output_tokens"] == 3
    assert response["output"][0]["status"] == "incomplete"  # the message was cut, as OpenAI marks it


@pytest.mark.parametrize("stream", [False, True])
def test_max_turns_reached_is_incomplete(base_url, stream):
    body = {"model": "loop", "input": "x"}
    if stream:
        events = stream_events(base_url, "v1/responses", body)
        response = check_response_events(events)
        assert events[-1]["type"] == "response.incomplete"
    else:
        response = httpx.post(f"{base_url}/v1/responses", json=body).json()
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_turns"}
    assert response["usage"]["total_tokens"] == 2 * USAGE["total_tokens"]  # both model calls counted
    assert response["usage"]["input_tokens_details"]["cached_tokens"] == 16


def test_max_turns_before_anything_streamed_is_still_a_whole_stream(base_url):
    events = stream_events(base_url, "v1/responses", {"model": "silent_loop", "input": "x"})  # on_chunk drops all
    response = check_response_events(events)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.incomplete"]
    assert response["incomplete_details"] == {"reason": "max_turns"} and response["output"] == []


@pytest.mark.parametrize("body, param, fragment", [
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type", "'web_search' are not offered"),
    ({"input": "x", "background": True}, "background", "background responses"),
    ({"input": "x", "include": ["reasoning.encrypted_content"]}, "include", "not offered"),
    ({"input": "x", "truncation": "auto"}, "truncation", "not offered"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0", "item_reference"),
    ({"input": "x", "tool_choice": {"type": "web_search_preview"}}, "tool_choice", "not offered"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input.0.content.0.image_url", "no file store"),
    ({"input": "x", "temperature": "hot"}, "temperature", "valid number"),
    ({"input": [{"type": "banana"}]}, "input.0", "Input should be an item"),
    ({"input": [{"role": "user", "content": "\ud800"}]}, "input.0.content", "lone UTF-16 surrogate"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": 5}}}},
     "text.format.schema", "not a valid JSON Schema"),
    ({}, "input", "input is required"),
    ({"input": "x", "top_logprobs": 2}, "top_logprobs", "not supported by the model skill"),
])
def test_bad_requests_name_the_field(base_url, body, param, fragment):
    response = httpx.post(f"{base_url}/plain/responses", content=json.dumps(body).encode(),
                          headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert fragment in error["message"]


def test_unknown_previous_response_and_agent_are_404(base_url):
    with pytest.raises(openai.NotFoundError) as info:
        client(base_url).responses.create(model="plain", input="x", previous_response_id="resp_nope")
    assert info.value.body["param"] == "previous_response_id" and "'resp_nope'" in info.value.body["message"]
    with pytest.raises(openai.NotFoundError) as info:
        client(base_url).responses.create(model="nobody", input="x")
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client(base_url).responses.retrieve("resp_nope")
    other = client(base_url).responses.create(model="plain", input="x")
    with pytest.raises(openai.NotFoundError):  # a response of another agent is not under this one
        client(base_url, "calc").responses.retrieve(other.id)
    assert client(base_url, "plain").responses.retrieve(other.id).id == other.id


@pytest.mark.parametrize("stream", [False, True])
def test_errors_get_their_status(base_url, stream):
    with pytest.raises(openai.AuthenticationError, match="missing or invalid token"):
        client(base_url).responses.create(model="locked", input="x", stream=stream)
    with pytest.raises(openai.RateLimitError) as info:
        client(base_url).responses.create(model="limited", input="x", stream=stream)
    assert info.value.response.headers["retry-after"] == "7"


def test_error_mid_stream_is_response_failed(base_url):
    events = stream_events(base_url, "v1/responses", {"model": "flaky", "input": "x"})
    response = check_response_events(events)
    assert events[-1]["type"] == "response.failed"
    assert response["status"] == "failed"
    assert response["error"] == {"code": "upstream_error", "message": "provider connection dropped"}
    assert response["output"][0]["content"][0]["text"] == "partial answer"
    with pytest.raises(openai.NotFoundError):  # a failed response is not stored
        client(base_url).responses.retrieve(response["id"])


def test_model_is_retrievable(base_url):
    assert client(base_url).models.retrieve("calc").id == "calc"
    with pytest.raises(openai.NotFoundError):
        client(base_url).models.retrieve("nobody")
