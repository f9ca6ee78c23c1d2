"""OpenAISkill and XAISkill through the real openai SDK over real HTTP, against a local fake
server speaking OpenAI's wire format."""

import json

import pytest

from robutler_core import Agent
from robutler_core.testing.llm_contract import Calculator, run
from robutler_core import errors
from robutler_core.plugins import installed_skills
from robutler_core.testing.fake_http import RawAnswerServer
from robutler_core.testing.fake_openai import FakeOpenAIServer, FakeResponse
from robutler_skill_litellm import LiteLLMSkill
from robutler_skill_openai import OpenAISkill, XAISkill

USER = [{"role": "user", "content": "what is 20 plus 22?"}]


@pytest.fixture
def upstream():
    with FakeOpenAIServer() as server:
        yield server


def skill(upstream, cls=OpenAISkill, **config):
    return cls({"base_url": upstream.base_url, "api_key": "sk-test", "max_retries": 0, **config})


def calc_agent(upstream, **config):
    return Agent("calc", model="openai/gpt-4o-mini", skills={"openai": skill(upstream, **config), "calc": Calculator()})


def add_call(call_id="call_1"):
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "add", "arguments": '{"a": 20, "b": 22}'}}]}


def test_native_skills_serve_their_prefixes_before_litellm():
    assert installed_skills().get("openai").skill_class is OpenAISkill
    assert installed_skills().get("xai").skill_class is XAISkill
    assert isinstance(Agent("a", model="openai/gpt-4o").llm, OpenAISkill)
    assert isinstance(Agent("a", model="xai/grok-3").llm, XAISkill)
    assert isinstance(Agent("a", model="litellm/openai/gpt-4o").llm, LiteLLMSkill)  # asked by name
    assert isinstance(Agent("a", model="anthropic/claude-x", registry=_without("anthropic")).llm, LiteLLMSkill)


def _without(name):
    from robutler_core.plugins import SkillRegistry

    registry = SkillRegistry()
    for info in installed_skills():
        if info.name != name:
            registry.add(info.skill_class, name=info.name, distribution=info.distribution)
    return registry


@pytest.mark.parametrize("stream", [False, True])
async def test_multi_turn_tool_conversation_through_an_agent(upstream, stream):
    upstream.enqueue_completion(add_call(), usage={"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37})
    upstream.enqueue_completion({"role": "assistant", "content": "20 + 22 = 42"},
                                usage={"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56})
    agent = calc_agent(upstream, temperature=0.1)
    context = agent.new_context(USER, None, stream, temperature=0.7, stream_options={"include_usage": True})
    completion, _ = await run(agent, stream, context=context)
    content, usage = completion["choices"][0]["message"]["content"], completion["usage"]
    assert content == "20 + 22 = 42"
    assert usage == {"prompt_tokens": 80, "completion_tokens": 13, "total_tokens": 93}
    first, second = (r.body for r in upstream.requests)
    assert first["model"] == "gpt-4o-mini" and first["temperature"] == 0.7  # the request's value wins
    assert first["tools"][0]["function"]["name"] == "add"
    assert bool(first.get("stream")) is stream
    if stream:
        assert first["stream_options"] == {"include_usage": True}
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-test"
    assert [r.metadata["total_tokens"] for r in context.usage_records] == [37, 56]
    # priced from LiteLLM's price map (robutler-skill-litellm is installed): $0.15 / $0.60 per M tokens
    assert context.usage_records[0].metadata["cost_usd"] == pytest.approx(30 * 0.15e-6 + 7 * 0.6e-6)
    assert context.answered_by == ["openai/gpt-4o-mini", "openai/gpt-4o-mini"]


async def test_timeout_and_connection_failure(upstream):
    upstream.enqueue(FakeResponse(message={"role": "assistant", "content": "late"}, delay=2))
    with pytest.raises(errors.UpstreamTimeoutError, match="openai/gpt-4o-mini"):
        await calc_agent(upstream, timeout=0.3).run(USER)
    refused = OpenAISkill({"base_url": "http://127.0.0.1:9/v1", "api_key": "k", "max_retries": 0, "model": "m"})
    with pytest.raises(errors.UpstreamError, match="Connection error") as info:
        await refused.chat_completion(USER)
    assert info.value.code == "upstream_connection_error"


async def test_the_sdk_retries_a_429_with_its_backoff(upstream):
    upstream.enqueue_error(429, "slow down", headers={"retry-after": "0"})
    upstream.enqueue_completion({"role": "assistant", "content": "second try"})
    completion = await skill(upstream, model="gpt-4o-mini", max_retries=1).chat_completion(USER)
    assert completion["choices"][0]["message"]["content"] == "second try"
    assert len(upstream.requests) == 2


async def test_fallback_to_another_provider_on_a_retryable_error(upstream):
    with FakeOpenAIServer() as xai_upstream:
        upstream.enqueue_error(503, "overloaded")
        xai_upstream.enqueue_completion({"role": "assistant", "content": "grok here"})
        openai_skill = skill(upstream)
        xai_skill = skill(xai_upstream, cls=XAISkill)
        agent = Agent("a", model="openai/gpt-4o-mini", fallbacks=["xai/grok-3"],
                      skills={"openai": openai_skill, "xai": xai_skill})
        context = agent.new_context(USER, None, False)
        completion = await agent.run(USER, context=context)
        assert completion["choices"][0]["message"]["content"] == "grok here"
        assert context.answered_by == ["xai/grok-3"]
        assert xai_upstream.requests[0].body["model"] == "grok-3"


async def test_config_comes_from_the_environment_when_not_given(upstream, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-42")
    await Agent("a", model="openai/gpt-4o-mini").run(USER)
    headers = upstream.requests[0].headers
    assert headers["authorization"] == "Bearer sk-env" and headers["openai-organization"] == "org-42"

    monkeypatch.setenv("XAI_API_KEY", "xai-env")
    monkeypatch.setenv("XAI_BASE_URL", upstream.base_url)
    await Agent("x", model="xai/grok-3").run(USER)
    assert upstream.requests[1].headers["authorization"] == "Bearer xai-env"
    assert "openai-organization" not in upstream.requests[1].headers
    monkeypatch.delenv("XAI_BASE_URL")
    assert str(XAISkill({"api_key": "k"}).client.base_url) == "https://api.x.ai/v1/"


async def test_missing_api_key_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(errors.ConfigurationError, match=r"OpenAISkill needs an API key: set config\['api_key'\] or \$OPENAI_API_KEY"):
        await Agent("a", model="openai/gpt-4o-mini").run(USER)


async def test_embeddings(upstream):
    vectors = await skill(upstream).embed(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) == 8 and vectors[0] != vectors[1]
    body = upstream.requests[0].body
    assert body["model"] == "text-embedding-3-small" and body["input"] == ["one", "two"]


async def test_xai_embeddings_need_a_named_model(upstream):
    with pytest.raises(errors.ConfigurationError, match=r"XAISkill.embed needs a model"):
        await skill(upstream, cls=XAISkill).embed("text")
    vectors = await skill(upstream, cls=XAISkill, embedding_model="grok-embed").embed("text")
    assert len(vectors) == 1 and upstream.requests[-1].body["model"] == "grok-embed"


def test_options_are_validated_when_the_skill_is_made():
    with pytest.raises(errors.ConfigurationError) as info:
        OpenAISkill({"timeout": "abc", "max_retries": -1, "temprature": 0.2})
    message = str(info.value)
    assert message.startswith("OpenAISkill: invalid config: ")
    assert "option 'timeout': Input should be a valid number" in message
    assert "option 'max_retries': Input should be greater than or equal to 0, got -1" in message
    assert "option 'temprature': unknown option" in message
    assert XAISkill({"timeout": "30", "model": "grok-3"}).config == {"timeout": 30.0, "model": "grok-3"}


def test_check_configuration_reports_a_missing_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    with pytest.raises(errors.ConfigurationError, match=r"OpenAISkill needs an API key: .*\$OPENAI_API_KEY"):
        OpenAISkill({"model": "gpt-4o"}).check_configuration()
    with pytest.raises(errors.ConfigurationError, match=r"XAISkill needs an API key: .*\$XAI_API_KEY"):
        XAISkill({"model": "grok-3"}).check_configuration()
    OpenAISkill({"model": "gpt-4o", "api_key": "sk-config"}).check_configuration()
    monkeypatch.setenv("XAI_API_KEY", "xai-env")
    XAISkill({"model": "grok-3"}).check_configuration()


async def test_close_closes_the_client(upstream):
    openai_skill = skill(upstream, model="gpt-4o-mini")
    await openai_skill.initialize(None)
    client = openai_skill.client
    await openai_skill.close()
    assert client.is_closed()
    await openai_skill.close()  # twice is harmless


async def test_initialize_builds_the_client_once_and_calls_reuse_it(upstream):
    llm = skill(upstream, model="gpt-4o-mini")
    assert llm._client is None
    await llm.initialize(None)
    built = llm._client
    assert built is not None  # built at start-up, not at the first request
    await llm.chat_completion(USER)
    [c async for c in llm.chat_completion_stream(USER)]
    assert llm._client is built and len(upstream.requests) == 2


async def test_a_fallback_without_a_key_does_not_break_the_agent(upstream, monkeypatch):
    """initialize() does not raise for a missing key (check_configuration reports it): a
    fallback that is never reached must not fail the agent's requests."""
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    keyless = XAISkill({"model": "grok-3"})
    await keyless.initialize(None)
    assert keyless._client is None
    agent = Agent("a", model=skill(upstream, model="gpt-4o-mini"), fallbacks=[keyless])
    assert (await agent.run(USER))["choices"][0]["message"]["content"].startswith("fake answer")
    with pytest.raises(errors.ConfigurationError, match=r"\$XAI_API_KEY"):
        await keyless.chat_completion(USER)


@pytest.mark.parametrize("stream", [False, True])
async def test_cached_prompt_tokens_are_priced_at_the_cache_read_rate(upstream, stream):
    upstream.enqueue_completion({"role": "assistant", "content": "cached"}, usage={
        "prompt_tokens": 10_000, "completion_tokens": 100, "total_tokens": 10_100,
        "prompt_tokens_details": {"cached_tokens": 8_000, "audio_tokens": 0}})
    agent = calc_agent(upstream)
    context = agent.new_context(USER, None, stream, stream_options={"include_usage": True})
    await run(agent, stream, context=context)
    [record] = context.usage_records
    # gpt-4o-mini in LiteLLM's price map: $0.15 input, $0.075 cached input, $0.60 output per M tokens
    assert record.metadata["cost_usd"] == pytest.approx(2_000 * 0.15e-6 + 8_000 * 0.075e-6 + 100 * 0.6e-6)


OPENAI_ONLY = {
    "metadata": {"session": "s-1"}, "store": True, "logprobs": True, "top_logprobs": 2,
    "reasoning_effort": "low", "service_tier": "flex", "modalities": ["text"],
    "prediction": {"type": "content", "content": "42"}, "logit_bias": {"50256": -100},
    "prompt_cache_key": "k-1", "safety_identifier": "user-hash", "verbosity": "low", "seed": 7,
}


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_parameters_reach_the_api(upstream, stream):
    assert set(OPENAI_ONLY) <= OpenAISkill.supported_params and set(OPENAI_ONLY) <= XAISkill.supported_params
    assert not {"functions", "function_call", "n"} & OpenAISkill.supported_params
    llm = skill(upstream, model="gpt-4o-mini")
    if stream:
        [c async for c in llm.chat_completion_stream(USER, **OPENAI_ONLY)]
    else:
        await llm.chat_completion(USER, **OPENAI_ONLY)
    body = upstream.requests[0].body
    assert {k: body[k] for k in OPENAI_ONLY} == OPENAI_ONLY


@pytest.mark.parametrize(("body", "events", "problem"), [
    (b"<html>Bad gateway</html>", False, "not valid JSON"),
    (b'{"object": "error"}', False, "without choices"),
    (b"data: {not json\n\n", True, "not valid JSON"),
    (b'data: {"unexpected": true}\n\ndata: [DONE]\n\n', True, "without a choices list"),
])
async def test_a_malformed_answer_is_a_502_and_the_fallback_answers(upstream, body, events, problem):
    with RawAnswerServer(body, events) as broken:
        llm = OpenAISkill({"base_url": f"{broken.origin}/v1", "api_key": "k", "max_retries": 0, "model": "gpt-4o-mini"})
        with pytest.raises(errors.UpstreamError, match=problem) as info:
            if events:
                [c async for c in llm.chat_completion_stream(USER)]
            else:
                await llm.chat_completion(USER)
        assert info.value.status_code == 502 and info.value.code == "upstream_invalid_response"

        upstream.enqueue_completion({"role": "assistant", "content": "from the fallback"})
        agent = Agent("a", model=llm, fallbacks=[skill(upstream, cls=XAISkill, model="grok-3")])
        completion, _ = await run(agent, events)
        assert completion["choices"][0]["message"]["content"] == "from the fallback"


async def test_a_parameter_newer_than_the_installed_sdk_still_reaches_the_body(upstream):
    await skill(upstream, model="gpt-4o-mini").chat_completion(USER, temperature=0.5, brand_new_option={"x": 1})
    body = upstream.requests[0].body
    assert body["brand_new_option"] == {"x": 1} and body["temperature"] == 0.5
