"""AnthropicSkill through the real anthropic SDK over real HTTP, against a local fake server
speaking Anthropic's Messages wire format (JSON, SSE events, errors)."""

import pytest

from robutler_core import Agent
from robutler_core.testing.llm_contract import Calculator, run
from robutler_core import errors
from robutler_core.plugins import installed_skills
from robutler_core.testing.fake_http import RawAnswerServer
from robutler_skill_anthropic import DEFAULT_MAX_TOKENS, AnthropicSkill
from robutler_skill_anthropic.testing import AnthropicResponse, FakeAnthropicServer
from robutler_skill_litellm import LiteLLMSkill

USER = [{"role": "user", "content": "what is 20 plus 22?"}]


@pytest.fixture
def upstream():
    with FakeAnthropicServer() as server:
        yield server


def skill(upstream, **config):
    return AnthropicSkill({"base_url": upstream.base_url, "api_key": "sk-ant-test", "max_retries": 0, **config})


def calc_agent(upstream, **config):
    return Agent("calc", "You add numbers.", model="anthropic/claude-sonnet-4-6",
                 skills={"anthropic": skill(upstream, **config), "calc": Calculator()})


def test_native_skill_serves_anthropic_before_litellm():
    assert installed_skills().get("anthropic").skill_class is AnthropicSkill
    assert isinstance(Agent("a", model="anthropic/claude-sonnet-4-6").llm, AnthropicSkill)
    assert isinstance(Agent("a", model="litellm/anthropic/claude-sonnet-4-6").llm, LiteLLMSkill)


@pytest.mark.parametrize("stream", [False, True])
async def test_multi_turn_tool_conversation_through_an_agent(upstream, stream):
    upstream.enqueue_message([{"type": "text", "text": "Adding."},
                              {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 20, "b": 22}}],
                             usage={"input_tokens": 100, "output_tokens": 10})
    upstream.enqueue_message("20 + 22 = 42", usage={"input_tokens": 150, "output_tokens": 8})
    agent = calc_agent(upstream)
    context = agent.new_context(USER, None, stream, stream_options={"include_usage": True})
    completion, _ = await run(agent, stream, context=context)
    content, usage = completion["choices"][0]["message"]["content"], completion["usage"]
    assert content == "Adding.20 + 22 = 42"
    assert usage == {"prompt_tokens": 250, "completion_tokens": 18, "total_tokens": 268,
                     "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 0}}
    first, second = (r.body for r in upstream.requests)
    assert first["system"] == "You add numbers." and first["max_tokens"] == DEFAULT_MAX_TOKENS
    assert first["model"] == "claude-sonnet-4-6" and bool(first.get("stream")) is stream
    assert first["tools"][0]["name"] == "add" and first["tools"][0]["input_schema"]["required"] == ["a", "b"]
    assert second["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "text", "text": "Adding."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 20, "b": 22}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]},
    ]
    assert [r.metadata["model"] for r in context.usage_records] == ["anthropic/claude-sonnet-4-6"] * 2
    # priced from LiteLLM's price map: $3 / $15 per million tokens
    assert context.usage_records[0].metadata["cost_usd"] == pytest.approx(100 * 3e-6 + 10 * 15e-6)


async def test_error_event_mid_stream_maps_by_its_type(upstream):
    upstream.enqueue(AnthropicResponse(content=[{"type": "text", "text": "partial"}],
                                       error_mid_stream={"type": "overloaded_error", "message": "Overloaded"}))
    with pytest.raises(errors.ServiceUnavailableError, match="provider error from anthropic/claude-sonnet-4-6: Overloaded"):
        [c async for c in calc_agent(upstream).run_streaming(USER)]


async def test_timeout_connection_failure_and_sdk_retry(upstream):
    upstream.enqueue(AnthropicResponse(content=[{"type": "text", "text": "late"}], delay=2))
    with pytest.raises(errors.UpstreamTimeoutError):
        await calc_agent(upstream, timeout=0.3).run(USER)
    refused = AnthropicSkill({"base_url": "http://127.0.0.1:9", "api_key": "k", "max_retries": 0, "model": "m"})
    with pytest.raises(errors.UpstreamError) as info:
        await refused.chat_completion(USER)
    assert info.value.code == "upstream_connection_error"

    upstream.enqueue_error(429, "slow down", headers={"retry-after": "0"})
    upstream.enqueue_message("second try")
    completion = await skill(upstream, model="claude-x", max_retries=1).chat_completion(USER)
    assert completion["choices"][0]["message"]["content"] == "second try"


async def test_config_and_request_parameters(upstream, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", upstream.base_url)
    agent = Agent("a", model="anthropic/claude-x", skills={"anthropic": AnthropicSkill({"max_tokens": 512, "temperature": 0.2})})
    await agent.run(USER, max_tokens=64, stop=["END"])
    body = upstream.requests[0].body
    assert body["max_tokens"] == 64 and body["temperature"] == 0.2 and body["stop_sequences"] == ["END"]
    assert upstream.requests[0].headers.get("authorization") == "Bearer sk-ant-env" or \
        upstream.requests[0].headers.get("x-api-key") == "sk-ant-env"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(errors.ConfigurationError, match=r"\$ANTHROPIC_API_KEY"):
        await Agent("b", model="anthropic/claude-x").run(USER)


async def test_bad_input_is_a_bad_request_before_any_http(upstream):
    with pytest.raises(errors.BadRequestError, match="input_audio"):
        await calc_agent(upstream).run([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])
    assert upstream.requests == []


async def test_overloaded_529_is_service_unavailable_and_auth_code_is_kept(upstream):
    upstream.enqueue_error(529, "Overloaded")
    with pytest.raises(errors.ServiceUnavailableError, match="provider error from anthropic/claude-sonnet-4-6: Overloaded"):
        await calc_agent(upstream).run(USER)
    upstream.enqueue_error(401, "invalid x-api-key")
    with pytest.raises(errors.UpstreamError) as info:  # the server's key, not the client's: 502
        await calc_agent(upstream).run(USER)
    assert info.value.status_code == 502 and info.value.code == "upstream_authentication_error"


def test_options_are_validated_and_a_missing_key_is_reported(monkeypatch):
    with pytest.raises(errors.ConfigurationError) as info:
        AnthropicSkill({"max_tokens": "many", "organization": "org-1"})
    message = str(info.value)
    assert message.startswith("AnthropicSkill: invalid config: ")
    assert "option 'max_tokens': Input should be a valid integer" in message
    assert "option 'organization': unknown option" in message
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(errors.ConfigurationError, match=r"AnthropicSkill needs an API key: .*\$ANTHROPIC_API_KEY"):
        AnthropicSkill({"model": "claude-x"}).check_configuration()
    AnthropicSkill({"model": "claude-x", "api_key": "sk-ant"}).check_configuration()


async def test_close_closes_the_client(upstream):
    claude = skill(upstream, model="claude-x")
    await claude.initialize(None)
    client = claude.client
    await claude.close()
    assert client.is_closed()


async def test_initialize_builds_the_client_once_and_calls_reuse_it(upstream, monkeypatch):
    claude = skill(upstream, model="claude-x")
    assert claude._client is None
    await claude.initialize(None)
    built = claude._client
    assert built is not None  # built at start-up, not at the first request
    await claude.chat_completion(USER)
    [c async for c in claude.chat_completion_stream(USER)]
    assert claude._client is built and len(upstream.requests) == 2
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    keyless = AnthropicSkill({"model": "claude-x"})
    await keyless.initialize(None)  # a missing key is check_configuration's report, not an error here
    with pytest.raises(errors.ConfigurationError, match=r"\$ANTHROPIC_API_KEY"):
        await keyless.chat_completion(USER)


@pytest.mark.parametrize("stream", [False, True])
async def test_cache_reads_and_writes_are_priced_at_their_own_rates(upstream, stream):
    upstream.enqueue_message("cached", usage={"input_tokens": 100, "output_tokens": 10,
                                              "cache_read_input_tokens": 8000, "cache_creation_input_tokens": 2000})
    agent = calc_agent(upstream)
    context = agent.new_context(USER, None, stream)
    await run(agent, stream, context=context)
    [record] = context.usage_records
    assert record.metadata["prompt_tokens"] == 10_100  # OpenAI's prompt_tokens count cached ones too
    # claude-sonnet-4-6 in LiteLLM's price map: $3 input, $0.30 cache read, $3.75 cache write,
    # $15 output per million tokens
    assert record.metadata["cost_usd"] == pytest.approx(100 * 3e-6 + 8000 * 0.3e-6 + 2000 * 3.75e-6 + 10 * 15e-6)


async def test_supported_parameters_are_translated_and_the_rest_are_not_claimed(upstream):
    supported = AnthropicSkill.supported_params
    assert {"temperature", "top_p", "stop", "user", "max_completion_tokens", "tool_choice"} <= supported
    assert not {"seed", "presence_penalty", "frequency_penalty", "logprobs", "reasoning_effort", "metadata",
                "store", "n", "functions", "function_call"} & supported
    await skill(upstream, model="claude-x").chat_completion(
        USER, user="user-7", stop="END", top_p=0.5, max_completion_tokens=99, temperature=0.3)
    body = upstream.requests[0].body
    assert body["metadata"] == {"user_id": "user-7"} and body["stop_sequences"] == ["END"]
    assert body["top_p"] == 0.5 and body["max_tokens"] == 99 and body["temperature"] == 0.3


@pytest.mark.parametrize(("body", "events", "problem"), [
    (b"<html>Bad gateway</html>", False, "not valid JSON"),
    (b'{"type": "message"}', False, "without a content list"),
    (b"event: message_start\ndata: {not json\n\n", True, "not valid JSON"),
    (b'{"type": "message", "content": [1]}', False, "a Message of the wrong shape"),
    (b"event: message_start\ndata: [1]\n\n", True, "a stream event of the wrong shape"),
])
async def test_a_malformed_answer_is_a_502_and_the_fallback_answers(upstream, body, events, problem):
    with RawAnswerServer(body, events) as broken:
        claude = AnthropicSkill({"base_url": broken.origin, "api_key": "k", "max_retries": 0, "model": "claude-x"})
        with pytest.raises(errors.UpstreamError, match=problem) as info:
            if events:
                [c async for c in claude.chat_completion_stream(USER)]
            else:
                await claude.chat_completion(USER)
        assert info.value.status_code == 502 and info.value.code == "upstream_invalid_response"

        upstream.enqueue_message("from the fallback")
        agent = Agent("a", model=claude, fallbacks=[skill(upstream, model="claude-y")])
        completion, _ = await run(agent, events)
        assert completion["choices"][0]["message"]["content"] == "from the fallback"


async def test_a_stream_cut_short_is_a_502():
    """After the first event the answer has begun (the agent no longer falls back), so only
    the skill's error is checked."""
    body = b'event: message_start\ndata: {"type": "message_start", "message": {"id": "msg_1"}}\n\n'
    with RawAnswerServer(body, events=True) as broken:
        claude = AnthropicSkill({"base_url": broken.origin, "api_key": "k", "max_retries": 0, "model": "claude-x"})
        with pytest.raises(errors.UpstreamError, match="ended before message_stop") as info:
            [c async for c in claude.chat_completion_stream(USER)]
        assert info.value.status_code == 502 and info.value.code == "upstream_invalid_response"
