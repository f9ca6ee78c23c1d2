"""Fallback models: tried in order after a retryable provider error, never after others."""

import pytest

from robutler_core import Agent
from robutler_core.errors import AuthenticationError, ConfigurationError, RateLimitError, ServiceUnavailableError, UpstreamError
from robutler_core.testing import ScriptedModel, finish_chunks, run_request, text_chunks

USER = [{"role": "user", "content": "hi"}]


def model(name, *turns):
    return ScriptedModel(list(turns), {"model": name})


@pytest.mark.parametrize("stream", [False, True])
async def test_retryable_failure_falls_back_and_the_context_says_who_answered(stream, caplog):
    primary = model("primary", RateLimitError("slow down", retry_after=2))
    second = model("second", ServiceUnavailableError("overloaded"))
    third = model("third", text_chunks("from the third"))
    agent = Agent("a", model=primary, fallbacks=[second, third])
    context = agent.new_context(USER, None, stream)
    completion = await run_request(agent, USER, stream=stream, context=context)
    text = completion["choices"][0]["message"]["content"]
    assert text == "from the third"
    assert context.answered_by == ["third"]
    assert len(primary.calls) == len(second.calls) == len(third.calls) == 1
    assert "model primary failed (RateLimitError: slow down); falling back to second" in caplog.text


async def test_non_retryable_failure_does_not_fall_back():
    backup = model("backup", text_chunks("never"))
    agent = Agent("a", model=model("primary", AuthenticationError("bad key")), fallbacks=[backup])
    with pytest.raises(AuthenticationError, match="bad key"):
        await agent.run(USER)
    assert backup.calls == []


async def test_the_last_models_error_is_raised_when_all_fail():
    agent = Agent("a", model=model("p", UpstreamError("p down")), fallbacks=[model("b", RateLimitError("b busy"))])
    with pytest.raises(RateLimitError, match="b busy"):
        await agent.run(USER)


async def test_a_failure_after_the_first_streamed_chunk_is_not_retried_elsewhere():
    backup = model("backup", text_chunks("never"))
    broken = model("p", [*text_chunks("partial", pieces=1), UpstreamError("connection dropped")])
    agent = Agent("a", model=broken, fallbacks=[backup])
    with pytest.raises(UpstreamError, match="connection dropped"):
        [c async for c in agent.run_streaming(USER)]
    assert backup.calls == []


def test_skill_config_fallbacks_come_after_the_agents_and_unknown_ones_fail():
    agent = Agent("a", model=ScriptedModel([], {"model": "p", "fallbacks": ["test/from-config"]}),
                  fallbacks=["test/from-agent"])
    assert agent.info()["fallbacks"] == ["test/from-agent", "test/from-config"]
    with pytest.raises(ConfigurationError, match="nosuch"):
        Agent("a", model="test", fallbacks=["nosuch/model"])


NO_CHOICES = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}


@pytest.mark.parametrize(("stream", "empty"), [
    (False, []), (True, []), (False, NO_CHOICES), (False, finish_chunks("stop")), (True, finish_chunks("stop")),
], ids=["no chunks", "stream of no chunks", "no choices", "only a finish", "stream of only a finish"])
async def test_an_empty_answer_is_an_upstream_error_after_the_fallbacks(stream, empty):
    agent = Agent("a", model=model("p", empty))
    with pytest.raises(UpstreamError, match="model p answered with no content and no tool calls") as info:
        await run_request(agent, USER, stream=stream)
    assert (info.value.status_code, info.value.code) == (502, "empty_upstream_response")

    backup = model("backup", text_chunks("from the backup"))
    agent = Agent("a", model=model("p", empty), fallbacks=[backup])
    context = agent.new_context(USER, None, stream)
    completion = await run_request(agent, USER, stream=stream, context=context)
    assert completion["choices"][0]["message"]["content"] == "from the backup"
    assert context.answered_by == ["backup"]
