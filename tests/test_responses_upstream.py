"""The Responses API in front of a stand-in upstream: an agent on the native OpenAI skill whose
provider is ``FakeOpenAIServer`` (realistic chat-completions SSE, tool-call argument deltas);
the streamed Responses events are well formed and agree with the non-streamed response."""

import json

import httpx
import openai
import pytest

from robutler_core import Agent, Skill, tool
from robutler_core.testing.fake_openai import FakeOpenAIServer
from robutler_server import create_app
from robutler_server.testing import check_response_events, serve_in_thread
from robutler_skill_openai import OpenAISkill

USAGE = {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37, "prompt_tokens_details": {"cached_tokens": 20}}
TOOLS = [{"type": "function", "name": name, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
         for name in ("search", "ask_user")]


class Calculator(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def base_url(upstream):
    llm = OpenAISkill({"base_url": upstream.base_url, "api_key": "sk-test", "max_retries": 0})
    agent = Agent("calc", model="openai/gpt-4o-mini", skills={"openai": llm, "calc": Calculator()})
    with serve_in_thread(create_app([agent])) as url:
        yield url


def events(base_url, body):
    with httpx.stream("POST", f"{base_url}/v1/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        return [json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line.startswith("data: ")]


def without_ids(response):
    """The response's status, output (item ids left out) and usage."""
    output = [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]
    return response["status"], output, response["usage"]


SCENARIOS = {
    "text": [({"role": "assistant", "content": "Hello there, friend."}, USAGE)],
    "parallel external calls with text": [({"role": "assistant", "content": "Let me check.", "tool_calls": [
        call("call_a", "search", {"q": "weather in Paris"}), call("call_b", "ask_user", {"q": "which day?"})]}, USAGE)],
    "server tool turn, then the answer": [
        ({"role": "assistant", "content": None, "tool_calls": [call("call_s", "add", {"a": 20, "b": 22})]}, USAGE),
        ({"role": "assistant", "content": "It is 42."}, USAGE)],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_stream_is_well_formed_and_agrees_with_the_response(base_url, upstream, scenario):
    answers = {}
    for stream in (True, False):
        for message, usage in SCENARIOS[scenario]:
            upstream.enqueue_completion(message, usage=usage)
        body = {"model": "calc", "input": "hi", "tools": TOOLS}
        if stream:
            answers[stream] = check_response_events(events(base_url, body))
        else:
            answer = httpx.post(f"{base_url}/v1/responses", json=body)
            assert answer.headers["x-robutler-model"] == "openai/gpt-4o-mini"
            answers[stream] = answer.json()
    assert without_ids(answers[True]) == without_ids(answers[False])
    status, output, usage = without_ids(answers[True])
    turns = len(SCENARIOS[scenario])
    assert status == "completed"
    assert usage == {"input_tokens": 30 * turns, "input_tokens_details": {"cached_tokens": 20 * turns},
                     "output_tokens": 7 * turns, "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": 37 * turns}
    final = SCENARIOS[scenario][-1][0]
    assert [item["type"] for item in output] == (["message"] if final["content"] else []) + (
        ["function_call"] * len(final.get("tool_calls") or []))
    if final["content"]:
        assert output[0]["content"][0]["text"] == final["content"]
    for item, sent in zip([i for i in output if i["type"] == "function_call"], final.get("tool_calls") or []):
        assert (item["call_id"], item["name"], item["arguments"]) == (
            sent["id"], sent["function"]["name"], sent["function"]["arguments"])


def test_argument_deltas_add_up_and_the_upstream_request_is_chat(base_url, upstream):
    upstream.enqueue_completion({"role": "assistant", "content": None, "tool_calls": [
        call("call_a", "search", {"q": "a long query about the weather in Paris"})]}, usage=USAGE)
    received = len(upstream.requests)
    stream = events(base_url, {"model": "calc", "input": "hi", "tools": TOOLS, "instructions": "Be brief.",
                               "max_output_tokens": 100})
    deltas = [e["delta"] for e in stream if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) > 1
    done = next(e for e in stream if e["type"] == "response.function_call_arguments.done")
    assert "".join(deltas) == done["arguments"] == json.dumps({"q": "a long query about the weather in Paris"})
    sent = upstream.requests[received].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert sent["max_completion_tokens"] == 100 and sent["stream"] is True
    assert [t["function"]["name"] for t in sent["tools"]] == ["add", "search", "ask_user"]


def test_upstream_errors_keep_their_status(base_url, upstream):
    upstream.enqueue_error(429, "Rate limit reached", type="rate_limit_error", code="rate_limit_exceeded",
                           headers={"retry-after": "3"})
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="calc", input="hi", stream=True)
    assert info.value.response.headers["retry-after"] == "3"
