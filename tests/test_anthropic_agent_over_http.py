"""An agent on model="anthropic/..." served by robutler-server answers the official openai
client: the request goes OpenAI format -> server -> AnthropicSkill -> anthropic SDK -> a fake
Messages API over HTTP, and back."""

import json

import openai
import pytest

from robutler_core import Agent, Skill, tool
from robutler_server import create_app
from robutler_server.testing import serve_in_thread
from robutler_skill_anthropic import AnthropicSkill
from robutler_skill_anthropic.testing import FakeAnthropicServer

ASK_USER = [{"type": "function", "function": {"name": "ask_user", "description": "Ask the human.", "parameters": {
    "type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}}}]


class Calculator(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


@pytest.fixture(scope="module")
def served():
    with FakeAnthropicServer() as upstream:
        claude = AnthropicSkill({"base_url": upstream.base_url, "api_key": "sk-ant-test", "max_retries": 0})
        agent = Agent("claude", "You are careful.", model="anthropic/claude-sonnet-4-6",
                      skills={"anthropic": claude, "calc": Calculator()})
        with serve_in_thread(create_app([agent])) as url:
            yield upstream, openai.OpenAI(base_url=f"{url}/claude", api_key="unused", max_retries=0)


def test_server_side_tool_turns_then_answer(served):
    upstream, client = served
    upstream.enqueue_message([{"type": "tool_use", "id": "toolu_add", "name": "add", "input": {"a": 2, "b": 3}}])
    upstream.enqueue_message("2 + 3 = 5")
    answer = client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "2+3?"}])
    completion = answer.parse()
    assert completion.choices[0].message.content == "2 + 3 = 5"
    assert answer.headers["x-robutler-model"] == "anthropic/claude-sonnet-4-6"
    tool_result = upstream.requests[-1].body["messages"][-1]["content"][0]
    assert tool_result == {"type": "tool_result", "tool_use_id": "toolu_add", "content": "5"}


def test_streamed_external_tool_call_round_trip(served):
    upstream, client = served
    upstream.enqueue_message([{"type": "text", "text": "I need to ask. "},
                              {"type": "tool_use", "id": "toolu_ask", "name": "ask_user", "input": {"question": "Which city?"}}])
    messages = [{"role": "user", "content": "weather please"}]
    stream = client.chat.completions.create(model="claude", messages=messages, tools=ASK_USER, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert text == "I need to ask. "
    assert calls[0].id == "toolu_ask" and calls[0].function.name == "ask_user"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"question": "Which city?"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.total_tokens > 0

    upstream.enqueue_message("Sunny in Paris.")
    final = client.chat.completions.create(model="claude", tools=ASK_USER, messages=[
        *messages,
        {"role": "assistant", "content": text, "tool_calls": [
            {"id": "toolu_ask", "type": "function", "function": {"name": "ask_user", "arguments": '{"question": "Which city?"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_ask", "content": "Paris"},
    ])
    assert final.choices[0].message.content == "Sunny in Paris."
    sent = upstream.requests[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_ask", "content": "Paris"}]}


def test_provider_rate_limit_reaches_the_client_with_retry_after(served):
    upstream, client = served
    upstream.enqueue_error(429, "Number of request tokens has exceeded your rate limit", headers={"retry-after": "7"})
    with pytest.raises(openai.RateLimitError, match="exceeded your rate limit") as error:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert error.value.response.headers["retry-after"] == "7"
