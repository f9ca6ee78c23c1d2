"""LiteLLMSkill through LiteLLM's real HTTP path against a local fake OpenAI-compatible upstream."""

import json

import pytest

from robutler_core import Agent
from robutler_core.testing.llm_contract import Calculator, run
from robutler_core import errors
from robutler_core.plugins import SkillRegistry, get_plugin_manager, installed_skills
from robutler_core.testing.fake_http import RawAnswerServer
from robutler_core.testing.fake_openai import FakeOpenAIServer, FakeResponse
from robutler_skill_litellm import LiteLLMSkill

USER = [{"role": "user", "content": "what is 20 plus 22?"}]


@pytest.fixture
def upstream():
    with FakeOpenAIServer() as server:
        yield server


def agent_for(upstream, **config):
    skill = LiteLLMSkill({"api_base": upstream.base_url, "api_key": "sk-config", **config})
    return Agent("calc", model="litellm/openai/fake-model", skills={"litellm": skill, "calc": Calculator()})


def add_call(call_id="call_1", a=20, b=22):
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "add", "arguments": json.dumps({"a": a, "b": b})}}]}


def test_registered_and_resolves_prefixes(monkeypatch):
    assert installed_skills().get("litellm").skill_class is LiteLLMSkill
    assert Agent("a", model="litellm/openai/gpt-4o").llm.model == "openai/gpt-4o"
    # where no native OpenAI skill is installed, LiteLLM serves openai/ too
    monkeypatch.setenv("ROBUTLER_LOAD_PLUGINS", "robutler-skill-litellm")
    only_litellm = SkillRegistry.from_plugin_manager(get_plugin_manager())
    llm = Agent("a", model="openai/gpt-4o", registry=only_litellm).llm
    assert isinstance(llm, LiteLLMSkill) and llm.model == "openai/gpt-4o"


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_loop_through_litellm(upstream, stream):
    upstream.enqueue_completion(add_call())
    upstream.enqueue_completion({"role": "assistant", "content": "20 + 22 = 42"})
    completion, _ = await run(agent_for(upstream), stream, stream_options={"include_usage": True})
    content, usage = completion["choices"][0]["message"]["content"], completion["usage"]
    assert content == "20 + 22 = 42"
    assert usage["completion_tokens"] == 10  # two upstream calls, 5 each
    first, second = (r.body for r in upstream.requests)
    assert first["model"] == "fake-model" and first["tools"][0]["function"]["name"] == "add"
    assert bool(first.get("stream")) is stream
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-config"


async def test_config_over_environment_and_params(upstream, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-environment")
    await agent_for(upstream, temperature=0.2, max_tokens=50).run(USER, temperature=0.7)
    body = upstream.requests[0].body
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-config"
    assert body["temperature"] == 0.7 and body["max_tokens"] == 50  # request params beat config defaults


async def test_timeout_maps_to_504(upstream):
    upstream.enqueue(FakeResponse(message={"role": "assistant", "content": "late"}, delay=2))
    with pytest.raises(errors.UpstreamTimeoutError):
        await agent_for(upstream, timeout=0.3).run(USER)


async def test_retries_are_configurable(upstream):
    upstream.enqueue_error(500, "flaky once")
    upstream.enqueue_completion({"role": "assistant", "content": "recovered"})
    completion = await agent_for(upstream, retries=1).run(USER)
    assert completion["choices"][0]["message"]["content"] == "recovered"
    assert len(upstream.requests) == 2


async def test_embed(upstream):
    skill = LiteLLMSkill({"api_base": upstream.base_url, "api_key": "sk-config"})
    vectors = await skill.embed(["one", "two words"], model="openai/fake-embedding")
    assert len(vectors) == 2 and len(vectors[0]) == 8 and vectors[0] != vectors[1]
    assert upstream.requests[0].body["input"] == ["one", "two words"]


async def test_cost_from_the_price_map_is_recorded_with_the_usage(upstream):
    upstream.enqueue_completion({"role": "assistant", "content": "hi"},
                                usage={"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000})
    skill = LiteLLMSkill({"api_base": upstream.base_url, "api_key": "sk-config"})
    agent = Agent("priced", model="litellm/openai/gpt-4o-mini", skills={"litellm": skill})
    context = agent.new_context(USER, None, False)
    await agent.run(USER, context=context)
    [record] = context.usage_records
    assert record.metadata["model"] == "litellm/openai/gpt-4o-mini"
    assert record.metadata["cost_usd"] == pytest.approx(0.00015 + 0.0006)
    assert record.credits == record.metadata["cost_usd"]


def test_model_cost_hook_prices_any_skill_and_knows_what_it_does_not_know():
    from robutler_core.plugins import model_cost

    usage = {"prompt_tokens": 1000, "completion_tokens": 1000}
    assert model_cost("openai/gpt-4o-mini", usage) == pytest.approx(0.00075)
    assert model_cost("anthropic/claude-sonnet-4-5", usage) == pytest.approx(0.018)
    assert model_cost("openai/no-such-model", usage) is None


@pytest.mark.parametrize(("model", "prompt", "completion"), [
    ("openai/gpt-4o-mini", 1234, 567),
    ("openai/gpt-4o", 10, 0),
    ("anthropic/claude-sonnet-4-6", 5000, 800),
    ("anthropic/claude-haiku-4-5", 1, 1),
    ("gemini/gemini-2.5-pro", 300_000, 1000),  # the above-200k-tokens rates
    ("litellm/openai/gpt-4o-mini", 100, 100),
])
def test_price_map_reading_agrees_with_litellms_own_arithmetic(model, prompt, completion):
    import litellm

    from robutler_skill_litellm.pricing import model_cost

    expected = sum(litellm.cost_per_token(model=model.removeprefix("litellm/"), prompt_tokens=prompt,
                                          completion_tokens=completion))
    assert model_cost(model, {"prompt_tokens": prompt, "completion_tokens": completion}) == pytest.approx(expected)


@pytest.mark.parametrize(("model", "usage"), [
    ("openai/gpt-4o-mini", {"prompt_tokens": 2000, "completion_tokens": 100,
                            "prompt_tokens_details": {"cached_tokens": 1500}}),
    ("anthropic/claude-sonnet-4-6", {"prompt_tokens": 10_000, "completion_tokens": 200,
                                     "prompt_tokens_details": {"cached_tokens": 8000, "cache_creation_tokens": 1500}}),
    ("anthropic/claude-sonnet-4-6", {"prompt_tokens": 10_000, "completion_tokens": 200, "prompt_tokens_details": {
        "cached_tokens": 0, "cache_creation_tokens": 3000,
        "cache_creation_token_details": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000}}}),
    ("gemini/gemini-2.5-pro", {"prompt_tokens": 300_000, "completion_tokens": 1000,
                               "prompt_tokens_details": {"cached_tokens": 100_000}}),
])
def test_cached_input_is_priced_as_litellm_prices_it(model, usage):
    import litellm
    from litellm.types.utils import PromptTokensDetailsWrapper, Usage

    from robutler_skill_litellm.pricing import model_cost

    details = usage["prompt_tokens_details"]
    expected = sum(litellm.cost_per_token(model=model, usage_object=Usage(
        prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
        total_tokens=usage["prompt_tokens"] + usage["completion_tokens"],
        prompt_tokens_details=PromptTokensDetailsWrapper(**details),
        cache_read_input_tokens=details.get("cached_tokens"),
        cache_creation_input_tokens=details.get("cache_creation_tokens"))))
    cost = model_cost(model, usage)
    assert cost == pytest.approx(expected)
    assert cost < model_cost(model, {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]}) \
        or not details.get("cached_tokens")  # a cache read is cheaper than an uncached token


def test_anthropic_usage_names_at_the_top_level_are_read_too():
    from robutler_skill_litellm.pricing import model_cost

    openai_shape = {"prompt_tokens": 10_000, "completion_tokens": 0,
                    "prompt_tokens_details": {"cached_tokens": 8000, "cache_creation_tokens": 1500}}
    anthropic_names = {"prompt_tokens": 10_000, "completion_tokens": 0,
                       "cache_read_input_tokens": 8000, "cache_creation_input_tokens": 1500}
    expected = 500 * 3e-6 + 8000 * 0.3e-6 + 1500 * 3.75e-6
    assert model_cost("anthropic/claude-sonnet-4-6", openai_shape) == pytest.approx(expected)
    assert model_cost("anthropic/claude-sonnet-4-6", anthropic_names) == pytest.approx(expected)


def test_options_are_validated_when_the_skill_is_made():
    with pytest.raises(errors.ConfigurationError) as info:
        LiteLLMSkill({"retries": "twice", "base_url": "http://x"})
    message = str(info.value)
    assert message.startswith("LiteLLMSkill: invalid config: ")
    assert "option 'retries': Input should be a valid integer" in message
    assert "option 'base_url': unknown option" in message


def test_check_configuration_asks_litellm_what_the_provider_needs(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OLLAMA_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(errors.ConfigurationError, match=r"LiteLLMSkill for openai/gpt-4o needs \$OPENAI_API_KEY"):
        LiteLLMSkill({"model": "openai/gpt-4o"}).check_configuration()
    with pytest.raises(errors.ConfigurationError, match=r"\$ANTHROPIC_API_KEY"):
        LiteLLMSkill({"model": "anthropic/claude-sonnet-4-5"}).check_configuration()
    LiteLLMSkill({"model": "openai/gpt-4o", "api_key": "sk-config"}).check_configuration()
    LiteLLMSkill({"model": "ollama/llama3", "api_base": "http://localhost:11434"}).check_configuration()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    LiteLLMSkill({"model": "anthropic/claude-sonnet-4-5"}).check_configuration()


def test_pricing_does_not_import_litellm_and_initialize_imports_it_off_the_event_loop():
    """Pricing reads the price map without LiteLLM. LiteLLM's import takes seconds: it happens
    in initialize(), in a thread, so the loop keeps ticking meanwhile and the first request
    does not stall it. (One fresh interpreter for both: a LiteLLM import is the cost.)"""
    import subprocess
    import sys

    code = """
import asyncio, sys, time
from robutler_core.plugins import model_cost
from robutler_skill_litellm import LiteLLMSkill, pricing

print(round(model_cost("openai/gpt-4o-mini", {"prompt_tokens": 1000000, "completion_tokens": 0}), 4),
      "litellm" in sys.modules)
pricing.price_map.cache_clear()

async def main():
    skill = LiteLLMSkill({"model": "openai/gpt-4o-mini", "api_key": "k"})
    gaps, stop = [], asyncio.Event()
    async def tick():
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    ticker = asyncio.create_task(tick())
    await skill.initialize(None)
    stop.set()
    await ticker
    print("litellm" in sys.modules, pricing.price_map.cache_info().currsize, max(gaps) < 2.0, len(gaps) > 10)

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.15", "False", "True", "1", "True", "True"]


async def test_openai_parameters_pass_through_litellm(upstream):
    passed = {"store": True, "logprobs": True, "top_logprobs": 2, "service_tier": "flex", "seed": 7,
              "logit_bias": {"50256": -100}, "prompt_cache_key": "k-1", "safety_identifier": "user-hash"}
    assert set(passed) <= LiteLLMSkill.supported_params
    assert not {"functions", "function_call", "n", "metadata"} & LiteLLMSkill.supported_params
    skill = LiteLLMSkill({"api_base": upstream.base_url, "api_key": "sk-config", "model": "openai/gpt-4o-mini"})
    await skill.chat_completion(USER, **passed)
    body = upstream.requests[0].body
    assert {k: body[k] for k in passed} == passed


@pytest.mark.parametrize(("body", "events"), [
    (b"<html>Bad gateway</html>", False),
    (b'{"object": "error"}', False),
    (b"data: {not json\n\n", True),
])
async def test_a_malformed_answer_is_a_502_and_the_fallback_answers(upstream, body, events):
    with RawAnswerServer(body, events) as broken:
        llm = LiteLLMSkill({"api_base": f"{broken.origin}/v1", "api_key": "k", "model": "openai/gpt-4o-mini"})
        with pytest.raises(errors.UpstreamError) as info:
            if events:
                [c async for c in llm.chat_completion_stream(USER)]
            else:
                await llm.chat_completion(USER)
        assert info.value.status_code == 502

        upstream.enqueue_completion({"role": "assistant", "content": "from the fallback"})
        fallback = LiteLLMSkill({"api_base": upstream.base_url, "api_key": "k", "model": "openai/other"})
        completion, _ = await run(Agent("a", model=llm, fallbacks=[fallback]), events)
        assert completion["choices"][0]["message"]["content"] == "from the fallback"
