"""The memory skills end to end: `robutler serve` with an agents file naming
``long_term_memory``, ``vector_memory`` and ``short_term_memory``, driven by the official openai
client, with a scripted OpenAI-compatible upstream choosing the tool calls and recording what
the model was sent.

- The caller's identity comes from a test auth skill (``header_auth``: its ``on_connection``
  hook sets ``context.peer_user_id`` from the ``X-Test-User`` header). It is installed the way
  any skill package is found, by an entry point in the ``robutler`` group: the test writes a
  module and its ``.dist-info`` (METADATA, entry_points.txt) to a directory on the server's
  ``PYTHONPATH``, which is what ``pip install`` of a one-module package leaves behind.
- The upstream (:class:`ScriptedUpstream`) answers a user message made of ``CALL name {json}``
  lines with those tool calls (the model "decides" to send whatever arguments the test wants,
  foreign ones included), and the tool results with a JSON list of their contents; any other
  message gets the fake's default answer. Each request's system message is what auto-recall
  produced.
- Everything lives in a temporary ``ROBUTLER_DATA_DIR``: the embedded PostgreSQL (facts,
  pgvector) and the Milvus Lite file, so a second server on the same directory sees the first
  one's memory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest

from robutler_core.testing.fake_openai import FakeOpenAIServer, FakeResponse

pytest.importorskip("robutler_skill_memory", reason="robutler-skill-memory is not installed")

# `robutler serve` as a subprocess, started and stopped (SIGTERM) as tests/test_end_to_end.py does.
_spec = importlib.util.spec_from_file_location("_end_to_end", Path(__file__).with_name("test_end_to_end.py"))
_end_to_end = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_end_to_end)
Served = _end_to_end.Served

AUTH_MODULE = '''\
"""Test-only auth skill: the caller is whoever the X-Test-User header names."""

from robutler_core import Skill, hook, hookimpl


class HeaderAuth(Skill):
    @hook("on_connection")
    def identify(self, context):
        user = context.headers.get("x-test-user")
        if user:
            context.peer_user_id = user


@hookimpl
def register_skills(register):
    register(HeaderAuth, name="header_auth")
'''


def install_auth_skill(directory: Path) -> Path:
    """``robutler_test_auth`` (skill ``header_auth``) as an installed distribution under
    ``directory``: the module and a dist-info with its entry point. Returns the directory, for
    ``PYTHONPATH``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "robutler_test_auth.py").write_text(AUTH_MODULE)
    info = directory / "robutler_test_auth-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robutler-test-auth\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[robutler]\nheader_auth = robutler_test_auth\n")
    return directory


class ScriptedUpstream(FakeOpenAIServer):
    """The fake OpenAI API, answering chat requests from their last messages:

    - last message a user message whose lines are ``CALL tool_name {json arguments}``: an
      assistant message with those tool calls;
    - last messages tool results: an assistant message whose content is the JSON list of
      those results' contents (so the client sees exactly what the tools returned);
    - anything else: the fake's default ``fake answer to: ...``.

    The answer is chosen in :meth:`record` (which the handler calls with the parsed body, in
    its own thread, just before :meth:`next_response`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def record(self, request: Any) -> None:
        super().record(request)
        body = request.body if isinstance(request.body, dict) else {}
        self._local.response = self._answer(body.get("messages")) if request.path.endswith("/chat/completions") else None

    def next_response(self) -> FakeResponse | None:
        response, self._local.response = getattr(self._local, "response", None), None
        return response

    @staticmethod
    def _answer(messages: list[dict[str, Any]] | None) -> FakeResponse | None:
        messages = messages or []
        if not messages:
            return None
        if messages[-1].get("role") == "tool":
            results = []
            for message in reversed(messages):
                if message.get("role") != "tool":
                    break
                results.insert(0, message.get("content"))
            return FakeResponse(message={"role": "assistant", "content": json.dumps(results)})
        content = messages[-1].get("content")
        if messages[-1].get("role") != "user" or not isinstance(content, str) or not content.startswith("CALL "):
            return None
        calls = []
        for line in content.splitlines():
            _, name, arguments = line.split(" ", 2)
            calls.append({"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                          "function": {"name": name, "arguments": arguments}})
        return FakeResponse(message={"role": "assistant", "content": None, "tool_calls": calls},
                            finish_reason="tool_calls")

    def chat_requests(self, marker: str) -> list[dict[str, Any]]:
        """Bodies of the chat requests whose messages mention ``marker``."""
        return [r.body for r in list(self.requests)
                if r.path.endswith("/chat/completions") and marker in json.dumps(r.body.get("messages"))]


def call(name: str, **arguments: Any) -> str:
    """One ``CALL`` line for :class:`ScriptedUpstream`."""
    return f"CALL {name} {json.dumps(arguments)}"


AGENTS = """
agents:
  - name: keeper
    instructions: You remember things (Milvus Lite vectors).
    model: openai/fake-model
    skills:
      header_auth: {{}}
      openai: {{base_url: "{base_url}", api_key: sk-test, max_retries: 0}}
      long_term_memory: {{}}
      vector_memory: {{embedding_model: openai/text-embedding-3-small}}
      short_term_memory: {{}}
  - name: keeper_pg
    instructions: You remember things (pgvector vectors).
    model: openai/fake-model
    skills:
      header_auth: {{}}
      openai: {{base_url: "{base_url}", api_key: sk-test, max_retries: 0}}
      long_term_memory: {{}}
      vector_memory: {{backend: pgvector, embedding_model: openai/text-embedding-3-small}}
"""


class Memory:
    """The served agents, restartable on the same data directory."""

    def __init__(self, root: Path, upstream: ScriptedUpstream) -> None:
        self.data_dir = root / "data"
        self.agents_file = root / "agents.yaml"
        self.agents_file.write_text(AGENTS.format(base_url=upstream.base_url))
        plugins = install_auth_skill(Path(root / "site"))
        pythonpath = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {"ROBUTLER_DATA_DIR": str(self.data_dir), "PYTHONPATH": pythonpath,
                    "OPENAI_API_KEY": "", "ROBUTLER_POSTGRES_DSN": ""}
        self.served = Served([str(self.agents_file)], env=self.env)

    def restart(self) -> str:
        """Stop the server (SIGTERM) and start a new one on the same data directory; returns
        the first server's output."""
        output = self.served.stop()
        self.served = Served([str(self.agents_file)], env=self.env)
        return output

    def client(self, user: str | None = None, agent: str = "keeper",
               conversation: str | None = None) -> openai.AsyncOpenAI:
        headers = {}
        if user:
            headers["X-Test-User"] = user
        if conversation:
            headers["X-Conversation-Id"] = conversation
        return openai.AsyncOpenAI(base_url=f"{self.served.url}/{agent}", api_key="x", max_retries=0,
                                  default_headers=headers, timeout=60)

    async def ask(self, content: str, user: str | None = None, agent: str = "keeper",
                  conversation: str | None = None) -> str:
        client = self.client(user, agent, conversation)
        try:
            completion = await client.chat.completions.create(
                model=agent, messages=[{"role": "user", "content": content}])
        finally:
            await client.close()
        return completion.choices[0].message.content

    async def tools(self, *lines: str, user: str | None = None, agent: str = "keeper") -> list[Any]:
        """Run the ``CALL`` lines in one request; each tool's result, parsed as JSON when it
        is JSON (an error stays the tool's ``Error: ...`` text)."""
        answer = await self.ask("\n".join(lines), user=user, agent=agent)
        results = []
        for content in json.loads(answer):
            try:
                results.append(json.loads(content))
            except (TypeError, ValueError):
                results.append(content)
        return results


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def memory(tmp_path_factory, upstream):
    served = Memory(tmp_path_factory.mktemp("memory"), upstream)
    yield served
    if served.served.process.poll() is None:
        served.served.stop()


def facts_of(result: Any) -> dict[str, Any]:
    """``{key: value}`` of a ``retrieve_facts`` result."""
    items = result.get("facts", result) if isinstance(result, dict) else result
    assert isinstance(items, list), result
    return {item["key"]: item["value"] for item in items}


def texts_of(result: Any) -> list[str]:
    """The texts of a ``search`` result."""
    items = result.get("results", result) if isinstance(result, dict) else result
    assert isinstance(items, list), result
    return [item["text"] for item in items]


async def test_a_fact_stored_in_one_request_is_recalled_in_a_later_one(memory):
    await memory.tools(call("store_fact", key="favourite_city", value={"name": "Lisbon", "since": 2019}),
                       user="recall-user")
    [result] = await memory.tools(call("retrieve_facts", query="favourite city"), user="recall-user")
    assert facts_of(result)["favourite_city"] == {"name": "Lisbon", "since": 2019}


@pytest.mark.parametrize("agent", ["keeper", "keeper_pg"])
async def test_two_users_never_see_each_others_facts_or_vectors(memory, agent):
    alice, bob = f"alice-{agent}", f"bob-{agent}"
    [stored, added] = await memory.tools(
        call("store_fact", key="secret", value="alice's door code is 4711"),
        call("add_content", text="alice keeps her spare key under the blue flowerpot"),
        user=alice, agent=agent)
    alice_ids = added.get("ids", added) if isinstance(added, dict) else added
    assert alice_ids, added
    # Bob's model tries everything: the same key, foreign partition arguments, alice's ids. The
    # calls of one request run concurrently, so reads, deletes and writes go in separate requests.
    foreign = {"user": alice, "user_id": alice, "peer_user_id": alice, "namespace": alice, "partition": alice}
    reads = await memory.tools(
        call("retrieve_facts", query="door code secret", limit=100),
        call("retrieve_facts", query="door code secret", limit=100, **foreign),
        call("search", query="spare key under the blue flowerpot", top_k=100),
        call("search", query="spare key under the blue flowerpot", top_k=100, **foreign),
        user=bob, agent=agent)
    assert "secret" not in facts_of(reads[0])  # nothing stored for bob yet
    deletes = await memory.tools(
        call("forget_fact", key="secret"),
        call("forget_fact", key="secret", **foreign),
        *(call("delete_content", id=str(i)) for i in alice_ids),
        *(call("delete_content", id=str(i), **foreign) for i in alice_ids),
        user=bob, agent=agent)
    writes = [await memory.tools(call("store_fact", key="secret", value="bob's", **foreign), user=bob, agent=agent),
              await memory.tools(call("store_fact", key="secret", value="bob's own secret"), user=bob, agent=agent)]
    seen = json.dumps([reads, deletes, writes])
    assert "4711" not in seen and "flowerpot" not in seen, seen
    assert not any(isinstance(r, dict) and (r.get("forgotten") or r.get("deleted")) for r in deletes), deletes
    # Alice still has her fact (bob's forget and store changed only bob's partition) and vector.
    [facts, found] = await memory.tools(call("retrieve_facts", query="door code secret", limit=100),
                                        call("search", query="spare key under the blue flowerpot", top_k=100),
                                        user=alice, agent=agent)
    assert facts_of(facts)["secret"] == "alice's door code is 4711"
    assert any("flowerpot" in text for text in texts_of(found))
    [bobs] = await memory.tools(call("retrieve_facts", query="secret", limit=100), user=bob, agent=agent)
    assert facts_of(bobs) == {"secret": "bob's own secret"}
    # The anonymous partition is a third one.
    [anonymous] = await memory.tools(call("retrieve_facts", query="door code secret", limit=100), agent=agent)
    assert "4711" not in json.dumps(anonymous)


async def test_auto_recall_puts_the_users_relevant_facts_and_only_theirs_into_the_system_message(memory, upstream):
    await memory.tools(call("store_fact", key="favourite_colour", value="teal"), user="recall-ann")
    await memory.tools(call("store_fact", key="favourite_colour", value="crimson"), user="recall-ben")
    marker = f"what is my favourite colour? ({uuid.uuid4().hex[:6]})"
    await memory.ask(marker, user="recall-ann")
    [request] = upstream.chat_requests(marker)
    system = request["messages"][0]
    assert system["role"] == "system"
    assert "teal" in system["content"] and "crimson" not in system["content"]
    marker = f"what is my favourite colour? ({uuid.uuid4().hex[:6]})"
    await memory.ask(marker, user="recall-ben")
    [request] = upstream.chat_requests(marker)
    assert "crimson" in request["messages"][0]["content"] and "teal" not in request["messages"][0]["content"]


async def test_a_conversation_id_continues_a_conversation_and_another_id_does_not(memory, upstream):
    first = f"my name is Ada {uuid.uuid4().hex[:6]}"
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    await memory.ask(first, user="talker", conversation=conversation)
    follow_up = f"what is my name? {uuid.uuid4().hex[:6]}"
    await memory.ask(follow_up, user="talker", conversation=conversation)
    [request] = upstream.chat_requests(follow_up)
    contents = [m.get("content") for m in request["messages"]]
    assert first in contents and contents[-1] == follow_up
    assert contents.index(first) < contents.index(follow_up)
    # The stored answer to the first message came along too.
    assert f"fake answer to: {first}" in contents
    other = f"what is my name? {uuid.uuid4().hex[:6]}"
    await memory.ask(other, user="talker", conversation=f"conv-{uuid.uuid4().hex[:8]}")
    [request] = upstream.chat_requests(other)
    assert first not in json.dumps(request["messages"])
    # The same conversation id from another caller is another caller's conversation.
    stranger = f"what is my name? {uuid.uuid4().hex[:6]}"
    await memory.ask(stranger, user="stranger", conversation=conversation)
    [request] = upstream.chat_requests(stranger)
    assert first not in json.dumps(request["messages"])


async def test_fifty_concurrent_stores_all_land(memory):
    await asyncio.gather(*(
        memory.tools(call("store_fact", key=f"parallel fact {i}", value={"n": i}), user="busy")
        for i in range(50)))
    [result] = await memory.tools(call("retrieve_facts", query="parallel fact", limit=50), user="busy")
    assert {value["n"] for value in facts_of(result).values()} == set(range(50))


async def test_memory_survives_a_server_restart(memory):
    """Last in the file: it replaces the module's server by a new one on the same data dir."""
    await memory.tools(call("store_fact", key="restart_marker", value="kept across restarts"),
                       call("add_content", text="the lighthouse keeper logs every ship"),
                       user="restarter")
    memory.restart()
    postmaster = memory.data_dir / "postgres" / "postmaster.pid"
    [facts, found] = await memory.tools(call("retrieve_facts", query="restart marker"),
                                        call("search", query="lighthouse keeper ships"),
                                        user="restarter")
    assert facts_of(facts)["restart_marker"] == "kept across restarts"
    assert any("lighthouse" in text for text in texts_of(found))
    memory.served.stop()
    assert not postmaster.exists(), "the embedded PostgreSQL outlived robutler serve"
