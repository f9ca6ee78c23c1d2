"""The server driven by the official openai client over a real loopback socket."""

import json

import httpx
import openai
import pytest

from robutler_core import Agent, Skill, hook, tool
from robutler_core.errors import AuthenticationError, RateLimitError, UpstreamError
from robutler_core.testing import ScriptedModel, text_chunks
from robutler_server import create_app
from robutler_server.testing import serve_in_thread
from robutler_core.errors import ConfigurationError

EXTERNAL = [{"type": "function", "function": {"name": "ask_user", "description": "Ask the human.", "parameters": {
    "type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}}}]
USER = [{"role": "user", "content": "hello"}]


class Calculator(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


class TokenAuth(Skill):
    @hook("on_connection", priority=1)
    def check(self, context):
        raise AuthenticationError("missing or invalid token")


class FailingMidStream(ScriptedModel):
    async def chat_completion_stream(self, messages, tools=None, **params):
        for chunk in text_chunks("partial answer", pieces=2):
            yield chunk
        raise UpstreamError("provider connection dropped")


@pytest.fixture(scope="module")
def base_url():
    agents = [
        Agent("plain", "Be helpful.", model="test"),
        Agent("calc", model="test", skills={"calc": Calculator()}),
        Agent("locked", model="test", skills={"auth": TokenAuth()}),
        Agent("limited", model=ScriptedModel([RateLimitError("provider rate limit", retry_after=7)] * 2)),
        Agent("flaky", model=FailingMidStream([None] * 5)),
    ]
    with serve_in_thread(create_app(agents)) as url:
        yield url


def client(base_url, agent):
    return openai.OpenAI(base_url=f"{base_url}/{agent}", api_key="unused", max_retries=0)


def test_plain_answer(base_url):
    completion = client(base_url, "plain").chat.completions.create(model="plain", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == 'TestModel received: "hello"'
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0


def test_streaming_answer_reassembled_with_usage(base_url):
    stream = client(base_url, "plain").chat.completions.create(
        model="plain", messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == 'TestModel received: "hello"'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_server_side_tool_runs_in_one_request(base_url):
    completion = client(base_url, "calc").chat.completions.create(model="calc", messages=USER)
    assert completion.choices[0].message.content == "Tool results: add returned 2"


@pytest.mark.parametrize("stream", [False, True])
def test_external_tool_round_trip(base_url, stream):
    c = client(base_url, "calc")
    if stream:
        calls = {}
        finish = None
        for chunk in c.chat.completions.create(model="calc", messages=USER, tools=EXTERNAL, stream=True):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for frag in choice.delta.tool_calls or []:
                    entry = calls.setdefault(frag.index, {"id": None, "name": "", "arguments": ""})
                    entry["id"] = frag.id or entry["id"]
                    entry["name"] += (frag.function.name or "") if frag.function else ""
                    entry["arguments"] += (frag.function.arguments or "") if frag.function else ""
        assert finish == "tool_calls"
        assert list(calls) == [0]
        call = calls[0]
        assistant = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]}
    else:
        completion = c.chat.completions.create(model="calc", messages=USER, tools=EXTERNAL)
        assert completion.choices[0].finish_reason == "tool_calls"
        tc = completion.choices[0].message.tool_calls[0]
        call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
        assistant = completion.choices[0].message.model_dump(exclude_none=True)
    assert call["name"] == "ask_user" and json.loads(call["arguments"]) == {"question": "a"}
    follow_up = USER + [assistant, {"role": "tool", "tool_call_id": call["id"], "content": "42 apples"}]
    final = c.chat.completions.create(model="calc", messages=follow_up, tools=EXTERNAL)
    assert final.choices[0].message.content == "Tool results: ask_user returned 42 apples"


async def test_async_client_and_v1_routes(base_url):
    c = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    models = await c.models.list()  # "locked" refuses the anonymous caller in on_connection
    assert [m.id for m in models.data] == ["plain", "calc", "limited", "flaky"]
    completion = await c.chat.completions.create(model="calc", messages=USER)
    assert completion.choices[0].message.content == "Tool results: add returned 2"
    stream = await c.chat.completions.create(model="plain", messages=USER, stream=True)
    assert "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices]) == 'TestModel received: "hello"'
    await c.close()


def test_unknown_agent_is_404(base_url):
    with pytest.raises(openai.NotFoundError) as info:
        client(base_url, "nobody").chat.completions.create(model="x", messages=USER)
    assert info.value.body["code"] == "agent_not_found" and "'nobody' does not exist" in info.value.body["message"]
    with pytest.raises(openai.NotFoundError) as info:
        client(base_url, "v1").chat.completions.create(model="nobody", messages=USER)
    assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"


@pytest.mark.parametrize("body, status, param, fragment", [
    (b"{not json", 400, None, "not valid JSON"),
    (b'{"messages": []}', 400, "messages", "at least 1 item"),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "messages.0.role", "Input should be"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature", "valid number"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream", "valid boolean"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "n", "less than or equal to 1"),
    (b'{"messages": [{"role": "tool", "content": "x"}]}', 400, "messages.0.tool_call_id", "Field required"),
    (b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "bad name"}}]}',
     400, "tools.0.function.name", "should match pattern"),
])
def test_bad_requests_name_the_field(base_url, body, status, param, fragment):
    response = httpx.post(f"{base_url}/plain/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert fragment in error["message"]


def test_v1_without_model_is_400(base_url):
    response = httpx.post(f"{base_url}/v1/chat/completions", json={"messages": USER})
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"


@pytest.mark.parametrize("stream", [False, True])
def test_guarding_hook_error_gets_its_status_even_when_streaming(base_url, stream):
    with pytest.raises(openai.AuthenticationError) as info:
        result = client(base_url, "locked").chat.completions.create(model="locked", messages=USER, stream=stream)
        list(result) if stream else None
    assert info.value.status_code == 401 and "missing or invalid token" in info.value.message


def test_provider_rate_limit_is_429_with_retry_after(base_url):
    response = httpx.post(f"{base_url}/limited/chat/completions", json={"messages": USER})
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert response.json()["error"] == {"message": "provider rate limit", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}
    with pytest.raises(openai.RateLimitError):
        list(client(base_url, "limited").chat.completions.create(model="limited", messages=USER, stream=True))


def test_error_mid_stream_is_a_final_error_event(base_url):
    with httpx.stream("POST", f"{base_url}/flaky/chat/completions", json={"messages": USER, "stream": True}) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line]
    assert json.loads(events[-1].removeprefix("data: ")) == {"error": {
        "message": "provider connection dropped", "type": "upstream_error", "param": None, "code": None}}
    assert "data: [DONE]" not in events
    with pytest.raises(openai.APIError, match="provider connection dropped"):
        list(client(base_url, "flaky").chat.completions.create(model="flaky", messages=USER, stream=True))


def test_info_routes(base_url):
    assert httpx.get(f"{base_url}/health").json() == {"status": "healthy", "agents": 5}
    info = httpx.get(f"{base_url}/calc").json()
    assert info["name"] == "calc" and info["tools"][0]["function"]["name"] == "add"
    assert [a["name"] for a in httpx.get(f"{base_url}/agents").json()["data"]][:2] == ["plain", "calc"]
    skills = httpx.get(f"{base_url}/skills").json()
    assert {"distribution": "robutler-core"}.items() <= skills[0].items()
    missing = httpx.get(f"{base_url}/nobody")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "agent_not_found"


@pytest.mark.parametrize("name", ["health", "v1", "agents", "metrics", "docs"])
def test_agent_names_may_not_shadow_routes(name):
    with pytest.raises(ConfigurationError, match=f"agent name '{name}' would shadow the server route"):
        create_app([Agent(name, model="test")])


def test_duplicate_agent_names_are_refused():
    with pytest.raises(ConfigurationError, match="two agents are named 'x'"):
        create_app([Agent("x", model="test"), Agent("x", model="test")])
