"""Offline models for tests: :class:`TestModel` and :class:`ScriptedModel`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ..skill import LLMSkill
from ..wire import ChunkAssembler, chat_completion, new_tool_call_id
from .chunks import completion_to_chunks
from .schema_values import example_value


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose ``content`` is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _words(text: str) -> int:
    return len(text.split())


class TestModel(LLMSkill):
    """A deterministic offline model, served as ``model="test"`` (or ``"test/anything"``).

    - Offered tools and the last message is not a tool result: it calls every tool once, with
      arguments generated from each tool's JSON schema (``finish_reason: "tool_calls"``) by
      :func:`~robutler_core.testing.schema_values.example_value`: a parameter's ``default``,
      ``enum`` or first ``examples`` value when it has one (give a parameter that the tool
      checks, such as a city, ``Field(examples=[...])``), else ``"a"``, ``1``, ``True``...;
      bounded in size, so a request's tool schema cannot make it build a huge value.
    - The last messages are tool results: it answers ``"Tool results: NAME returned RESULT; ..."``
      naming each call of the last assistant message.
    - No tools: it answers ``'TestModel received: "LAST USER MESSAGE"'``.

    Usage counts words (prompt: all message texts; completion: the answer and arguments).
    """

    __test__ = False  # not a pytest test class
    model_prefixes = ("test",)

    async def usage_cost(self, usage: dict[str, Any]) -> float | None:
        """The test model is free: 0.0."""
        return 0.0

    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The ``chat.completion`` this model gives for ``messages`` and ``tools``."""
        last = messages[-1] if messages else {"role": "user", "content": ""}
        if last.get("role") == "tool":
            message = {"role": "assistant", "content": self._tool_summary(messages)}
            finish = "stop"
        elif tools:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": new_tool_call_id(),
                        "type": "function",
                        "function": {
                            "name": t["function"]["name"],
                            "arguments": json.dumps(
                                example_value(t["function"].get("parameters") or {"type": "object"})
                            ),
                        },
                    }
                    for t in tools
                ],
            }
            finish = "tool_calls"
        else:
            user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
            message = {"role": "assistant", "content": f'TestModel received: "{message_text(user)}"'}
            finish = "stop"
        prompt_tokens = sum(_words(message_text(m)) for m in messages)
        completion_tokens = _words(message.get("content") or "") + sum(
            _words(c["function"]["arguments"]) + 1 for c in message.get("tool_calls", [])
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return chat_completion(model=self.model or "test", message=message, finish_reason=finish, usage=usage)

    @staticmethod
    def _tool_summary(messages: list[dict[str, Any]]) -> str:
        results: dict[str, str] = {}
        index = len(messages) - 1
        while index >= 0 and messages[index].get("role") == "tool":
            results[messages[index].get("tool_call_id", "")] = message_text(messages[index])
            index -= 1
        calls = messages[index].get("tool_calls", []) if index >= 0 else []
        names = {c["id"]: c["function"]["name"] for c in calls}
        parts = [f"{names.get(i, 'unknown tool')} returned {r}" for i, r in reversed(results.items())]
        return "Tool results: " + "; ".join(parts)

    async def chat_completion(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        return self.respond(messages, tools)

    async def chat_completion_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        for chunk in completion_to_chunks(self.respond(messages, tools)):
            yield chunk


class ScriptedModel(LLMSkill):
    """Replays scripted turns: each model call takes the next one.

    A turn is a list of ``chat.completion.chunk`` dicts (tool-call argument deltas included),
    a ``chat.completion`` dict, or an exception to raise. Streaming calls replay chunks as
    given (a completion is split into chunks); non-streaming calls assemble chunks into a
    completion. :attr:`calls` records each call's ``(messages, tools, params)``.
    """

    def __init__(self, turns: list[Any], config: dict[str, Any] | None = None) -> None:
        super().__init__({"model": "scripted", **(config or {})})
        self.turns = list(turns)
        self.calls: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]] = []

    async def usage_cost(self, usage: dict[str, Any]) -> float | None:
        """Scripted turns are free: 0.0."""
        return 0.0

    def _next_turn(self, messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> Any:
        self.calls.append(([dict(m) for m in messages], tools, params))
        if not self.turns:
            raise AssertionError(f"ScriptedModel was called {len(self.calls)} times; its script ran out")
        turn = self.turns.pop(0)
        if isinstance(turn, BaseException):
            raise turn
        return turn

    async def chat_completion(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        turn = self._next_turn(messages, tools, params)
        if isinstance(turn, dict):
            return turn
        assembler = ChunkAssembler()
        for chunk in turn:
            assembler.add(chunk)
        return assembler.completion(model=self.model or "scripted")

    async def chat_completion_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        turn = self._next_turn(messages, tools, params)
        for chunk in completion_to_chunks(turn) if isinstance(turn, dict) else turn:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
