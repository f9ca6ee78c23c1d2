"""The behaviour every LLM skill owes the agent, as a reusable pytest test class.

A provider skill package (robutler-skill-openai, robutler-skill-anthropic, yours) tests its
skill through its real SDK against a local fake of its provider's API, and inherits these
tests by subclassing :class:`LLMSkillContract` in a test module::

    class TestOpenAIContract(LLMSkillContract):
        model = "openai/gpt-4o-mini"

        @pytest.fixture
        def upstream(self):
            with FakeOpenAIServer() as server:
                yield server

        def make_skill(self, upstream):
            return OpenAISkill({"base_url": upstream.base_url, "api_key": "k", "max_retries": 0})

        def enqueue_text(self, upstream, text, usage): ...
        def enqueue_tool_calls(self, upstream, calls): ...
        def enqueue_error(self, upstream, status, message, retry_after): ...
        def tool_results_sent(self, upstream): ...

The tests drive an :class:`~robutler_core.Agent` (non-streaming and streaming) and check what
its users see: answers and usage, a multi-turn server-side tool conversation whose tool results
reach the provider under the model's call ids, external tool calls streamed as OpenAI deltas,
and provider errors mapped to :mod:`robutler_core.errors` with the provider's message, the
right status and ``retry_after``. The class name does not start with ``Test``, so pytest
collects only the subclasses.
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import pytest

from .. import Agent, Skill, tool
from .. import errors
from ..skill import LLMSkill
from .runner import run_request

USER = [{"role": "user", "content": "what is 20 plus 22?"}]
ASK_USER = [{"type": "function", "function": {
    "name": "ask_user", "description": "Ask the human a question.",
    "parameters": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
}}]

ERROR_STATUSES: dict[int, type[errors.RobutlerError]] = {
    400: errors.BadRequestError,
    401: errors.UpstreamError,  # the server's own key was refused: not the client's 401
    403: errors.UpstreamError,
    404: errors.NotFoundError,
    429: errors.RateLimitError,
    500: errors.UpstreamError,
    503: errors.ServiceUnavailableError,
}
"""The provider's HTTP status -> the Robutler error the skill must raise."""

UPSTREAM_CODES = {401: "upstream_authentication_error", 403: "upstream_permission_denied"}
"""The ``code`` of the errors for a provider refusing the server's own credentials."""


class Calculator(Skill):
    """A server-side tool for the contract's tool conversation."""

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


async def run(agent: Agent, stream: bool, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One request with :data:`USER`; the completion (assembled when streaming) and the chunks."""
    completion = await run_request(agent, USER, stream=stream, **kwargs)
    return completion, completion.pop("chunks", [])


class LLMSkillContract(abc.ABC):
    """Inherit in a ``Test...`` class; see the module docstring for what to provide."""

    model: ClassVar[str]
    """The ``provider/model`` the agent is built with."""

    error_statuses: ClassVar[dict[int, type[errors.RobutlerError]]] = ERROR_STATUSES

    # -- what a provider package provides ------------------------------------------------------
    @abc.abstractmethod
    def make_skill(self, upstream: Any) -> LLMSkill:
        """The skill under test, configured to call ``upstream`` without retries."""

    @abc.abstractmethod
    def enqueue_text(self, upstream: Any, text: str, usage: dict[str, int]) -> None:
        """Script the next answer: ``text``, with ``usage`` (``prompt_tokens``,
        ``completion_tokens``) in the provider's own usage fields."""

    @abc.abstractmethod
    def enqueue_tool_calls(self, upstream: Any, calls: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Script the next answer: tool calls ``(call_id, name, arguments)``."""

    @abc.abstractmethod
    def enqueue_error(self, upstream: Any, status: int, message: str, retry_after: int) -> None:
        """Script the next answer: an error ``status`` with ``message`` and a ``retry-after``
        header of ``retry_after`` seconds."""

    @abc.abstractmethod
    def tool_results_sent(self, upstream: Any) -> list[tuple[str, str]]:
        """The ``(call_id, content)`` tool results in the last request the upstream received."""

    # -- the contract -------------------------------------------------------------------------
    def agent(self, upstream: Any) -> Agent:
        return Agent("contract", "You add numbers.", model=self.model,
                     skills={"llm": self.make_skill(upstream), "calc": Calculator()})

    @pytest.mark.parametrize("stream", [False, True])
    async def test_answer_and_usage(self, upstream: Any, stream: bool) -> None:
        self.enqueue_text(upstream, "Hello there.", {"prompt_tokens": 12, "completion_tokens": 3})
        agent = self.agent(upstream)
        context = agent.new_context(USER, None, stream, stream_options={"include_usage": True})
        completion, chunks = await run(agent, stream, context=context)
        assert completion["choices"][0]["message"]["content"] == "Hello there."
        assert completion["choices"][0]["finish_reason"] == "stop"
        counts = {k: completion["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        assert counts == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        [record] = context.usage_records
        assert record.kind == "llm" and record.metadata["model"] == self.model
        assert context.answered_by == [self.model]
        if stream:
            assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
            assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) >= 1

    @pytest.mark.parametrize("stream", [False, True])
    async def test_multi_turn_server_side_tool_conversation(self, upstream: Any, stream: bool) -> None:
        self.enqueue_tool_calls(upstream, [("call_add_1", "add", {"a": 20, "b": 22}),
                                           ("call_add_2", "add", {"a": 1, "b": 1})])
        self.enqueue_text(upstream, "20 + 22 = 42", {"prompt_tokens": 40, "completion_tokens": 6})
        completion, _ = await run(self.agent(upstream), stream)
        assert completion["choices"][0]["message"]["content"] == "20 + 22 = 42"
        assert sorted(self.tool_results_sent(upstream)) == [("call_add_1", "42"), ("call_add_2", "2")]

    async def test_external_tool_call_streams_as_openai_deltas(self, upstream: Any) -> None:
        self.enqueue_tool_calls(upstream, [("call_ask", "ask_user", {"question": "Which city?"})])
        completion, chunks = await run(self.agent(upstream), True, tools=ASK_USER)
        fragments = [f for c in chunks if c["choices"] for f in c["choices"][0]["delta"].get("tool_calls", [])]
        assert fragments[0]["id"] == "call_ask" and fragments[0]["function"]["name"] == "ask_user"
        assert all(f["index"] == 0 for f in fragments)
        assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].replace(" ", "") == (
            '{"question":"Whichcity?"}')
        assert completion["choices"][0]["finish_reason"] == "tool_calls"

    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("status", sorted(ERROR_STATUSES))
    async def test_provider_errors_map_to_robutler_errors(self, upstream: Any, status: int, stream: bool) -> None:
        expected = self.error_statuses.get(status)
        if expected is None:
            pytest.skip(f"the provider has no {status} error")
        self.enqueue_error(upstream, status, f"upstream says {status}", 3)
        with pytest.raises(errors.RobutlerError) as info:
            await run(self.agent(upstream), stream)
        assert type(info.value) is expected
        assert f"upstream says {status}" in info.value.message
        if status in UPSTREAM_CODES:
            assert info.value.code == UPSTREAM_CODES[status]
        if expected is errors.RateLimitError:
            assert info.value.retry_after == 3


class OpenAIWireContract(LLMSkillContract):
    """The contract for skills that call an OpenAI-compatible API: the upstream is a
    :class:`~robutler_core.testing.fake_openai.FakeOpenAIServer`; a subclass sets
    :attr:`model` and :meth:`make_skill` only."""

    @pytest.fixture
    def upstream(self) -> Any:
        from .fake_openai import FakeOpenAIServer

        with FakeOpenAIServer() as server:
            yield server

    def enqueue_text(self, upstream: Any, text: str, usage: dict[str, int]) -> None:
        upstream.enqueue_completion({"role": "assistant", "content": text},
                                    usage={**usage, "total_tokens": sum(usage.values())})

    def enqueue_tool_calls(self, upstream: Any, calls: list[tuple[str, str, dict[str, Any]]]) -> None:
        upstream.enqueue_completion({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
            for call_id, name, arguments in calls]})

    def enqueue_error(self, upstream: Any, status: int, message: str, retry_after: int) -> None:
        upstream.enqueue_error(status, message, headers={"retry-after": str(retry_after)})

    def tool_results_sent(self, upstream: Any) -> list[tuple[str, str]]:
        messages = upstream.requests[-1].body["messages"]
        return [(m["tool_call_id"], m["content"]) for m in messages if m["role"] == "tool"]
