"""Helpers shared by the memory package's tests, importable as ``memory_test_helpers``.

pytest runs with ``--import-mode=importlib``, so test modules cannot import each other (nor
``conftest``) by name: ``conftest.py`` loads this file under the module name
``memory_test_helpers`` before any test module of this directory is collected.

- :class:`RecordingModel`, :class:`Identity`, :func:`contents`: short_term_memory's tests (an
  agent whose model records what it is sent; the caller from the ``X-User`` header).
- :class:`ToolCallingAgent` (with :func:`scripted`, :func:`parsed`): an agent whose model
  calls the tools it is given (long_term_memory's and vector_memory's tests).
- :data:`SERVER_DSN`, :func:`admin`, :func:`with_search_path`, :func:`fresh_schema`: a
  PostgreSQL to test against and a throwaway schema on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from robutler_core import Agent, Skill, hook
from robutler_core.testing import TestModel
from robutler_core.testing.chunks import finish_chunks, text_chunks, tool_call_chunks
from robutler_core.testing.models import ScriptedModel

# -- short_term_memory -------------------------------------------------------------------------


class RecordingModel(TestModel):
    """TestModel that never calls tools, and records the messages of each call."""

    __test__ = False

    def __init__(self):
        super().__init__({"model": "recording"})
        self.seen = []

    def respond(self, messages, tools):
        self.seen.append([dict(m) for m in messages])
        return super().respond(messages, None)


class Identity(Skill):
    """An auth skill: the caller is the X-User header (default priority, before memory)."""

    @hook("on_connection")
    def authenticate(self, context):
        context.peer_user_id = context.headers.get("x-user")


def contents(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """``(role, content)`` of each message but the system ones."""
    return [(m["role"], m.get("content")) for m in messages if m["role"] != "system"]


# -- tool-calling agents (long_term_memory, vector_memory) -----------------------------------------


def scripted(*calls: tuple[str, Any]) -> ScriptedModel:
    """A model that makes the given tool calls (one turn), then answers "done"."""
    return ScriptedModel([
        tool_call_chunks(list(calls)) + finish_chunks("tool_calls"),
        text_chunks("done") + finish_chunks("stop"),
    ])


def parsed(text: str) -> Any:
    """A tool result as the model saw it: its JSON value, or the text when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class ToolCallingAgent:
    """An agent with ``skills`` and a scripted model; :meth:`call` runs one request as a given
    user in which the model calls tools, and returns the tool results the model saw."""

    def __init__(self, name: str, skills: dict[str, Skill], **agent_options: Any) -> None:
        self.model = ScriptedModel([])
        self.agent = Agent(name, model=self.model, skills=skills, **agent_options)

    async def call(self, user: str | None, *calls: tuple[str, Any], message: str = "hi") -> list[Any]:
        self.model.turns = scripted(*calls).turns
        self.model.calls.clear()
        messages = [{"role": "user", "content": message}]
        context = self.agent.new_context(messages, None, False)
        context.peer_user_id = user
        completion = await self.agent.run(messages, context=context)
        assert completion["choices"][0]["message"]["content"] == "done"  # the request completed
        seen = self.model.calls[1][0]
        return [parsed(m["content"]) for m in seen if m["role"] == "tool"]

    async def one(self, user: str | None, name: str, arguments: Any) -> Any:
        """The result of one tool call."""
        return (await self.call(user, (name, arguments)))[0]

    def system_message(self, call: int = 0) -> str:
        """The system message of the model's ``call``-th call this request ("" when none)."""
        first = self.model.calls[call][0][0]
        return first["content"] if first["role"] == "system" else ""


# -- PostgreSQL ---------------------------------------------------------------------------------

SERVER_DSN = os.environ.get("ROBUTLER_TEST_POSTGRES_DSN") or None


async def admin(dsn: str, statement: str) -> None:
    """Run one statement on its own connection."""
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` with ``search_path=schema,public`` (asyncpg passes unknown query parameters on
    as server settings)."""
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema},public"


@asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """A new schema ``test_<12 hex digits>`` on the PostgreSQL at ``dsn`` (its name), dropped
    with its contents at the end (within 30 s)."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    await admin(dsn, f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        await asyncio.wait_for(admin(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE"), 30)
