"""long_term_memory through an agent's tool loop (a scripted model calls the tools), on the
embedded PostgreSQL and, when ROBUTLER_TEST_POSTGRES_DSN is set, on that server too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from robutler_skill_memory import LongTermMemorySkill
from robutler_skill_memory.long_term import last_user_text

from memory_test_helpers import ToolCallingAgent


class Memory(ToolCallingAgent):
    """An agent with long_term_memory on one test schema (:class:`ToolCallingAgent`)."""

    def __init__(self, dsn: str, name: str = "memory-agent", **config: Any) -> None:
        self.skill = LongTermMemorySkill({"dsn": dsn, **config})
        super().__init__(name, {"long_term_memory": self.skill})


@pytest.fixture
async def memory(postgres_target):
    memory = Memory(postgres_target.dsn)
    await memory.agent.initialize()
    yield memory
    await memory.agent.close()


async def test_store_retrieve_forget(memory):
    stored = await memory.one("alice", "store_fact", {"key": "favourite_colour", "value": "blue"})
    assert stored["key"] == "favourite_colour" and stored["created"] is True
    found = await memory.one("alice", "retrieve_facts", {"query": "colour"})
    assert [(f["key"], f["value"]) for f in found] == [("favourite_colour", "blue")]
    assert set(found[0]) == {"key", "value", "metadata", "updated_at", "score"}
    assert await memory.one("alice", "forget_fact", {"key": "favourite_colour"}) == {
        "key": "favourite_colour", "forgotten": True}
    assert await memory.one("alice", "retrieve_facts", {"query": "colour"}) == []
    assert await memory.one("alice", "forget_fact", {"key": "favourite_colour"}) == {
        "key": "favourite_colour", "forgotten": False}


async def test_store_is_an_upsert_and_values_are_any_json(memory):
    await memory.one("alice", "store_fact", {"key": "pets", "value": ["cat"], "metadata": {"source": "chat"}})
    replaced = await memory.one("alice", "store_fact", {"key": "pets", "value": {"cats": 2, "names": ["Tom", "Kit"]}})
    assert replaced["created"] is False
    found = await memory.one("alice", "retrieve_facts", {"query": "pets"})
    assert len(found) == 1
    assert found[0]["value"] == {"cats": 2, "names": ["Tom", "Kit"]}
    assert found[0]["metadata"] == {}  # replaced with the value: the same key replaces the fact
    for value in (42, 3.5, True, None, "text"):
        await memory.one("alice", "store_fact", {"key": "v", "value": value})
        assert (await memory.one("alice", "retrieve_facts", {"query": "v"}))[0]["value"] == value


async def test_search_ranks_the_best_match_first(memory):
    facts = {
        "favourite_colour": "blue, like the sea",
        "home_city": "Lisbon, Portugal",
        "job": "software engineer at a bakery",
        "colour_of_car": "red",
        "breakfast": "bread and coffee",
    }
    await memory.call("alice", *[("store_fact", {"key": k, "value": v}) for k, v in facts.items()])
    found = await memory.one("alice", "retrieve_facts", {"query": "Which city is home?"})
    assert found[0]["key"] == "home_city"
    found = await memory.one("alice", "retrieve_facts", {"query": "favourite colour"})
    assert [f["key"] for f in found][:2] == ["favourite_colour", "colour_of_car"]
    assert found[0]["score"] > found[1]["score"]
    # trigram similarity finds a misspelt word that full-text search cannot
    found = await memory.one("alice", "retrieve_facts", {"query": "Lisbonn"})
    assert found[0]["key"] == "home_city"
    limited = await memory.one("alice", "retrieve_facts", {"query": "colour", "limit": 1})
    assert len(limited) == 1
    recent = await memory.one("alice", "retrieve_facts", {"query": ""})
    assert {f["key"] for f in recent} == set(facts)  # an empty query lists the latest facts


async def test_users_never_see_each_others_facts_whatever_the_model_sends(memory):
    await memory.one("alice", "store_fact", {"key": "secret", "value": "alice's diary"})
    await memory.one("bob", "store_fact", {"key": "secret", "value": "bob's diary"})
    await memory.one(None, "store_fact", {"key": "secret", "value": "anonymous diary"})

    assert [f["value"] for f in await memory.one("bob", "retrieve_facts", {"query": "secret diary"})] == ["bob's diary"]
    assert [f["value"] for f in await memory.one(None, "retrieve_facts", {"query": "diary"})] == ["anonymous diary"]
    # the model tries to name another user or partition: refused, and nothing leaks
    for name, arguments in [
        ("retrieve_facts", {"query": "diary", "user_id": "alice"}),
        ("retrieve_facts", {"query": "diary", "context": {"peer_user_id": "alice"}}),
        ("store_fact", {"key": "secret", "value": "overwritten", "user_id": "alice"}),
        ("forget_fact", {"key": "secret", "peer_user_id": "alice"}),
        ("forget_fact", {"key": "secret", "namespace": "alice"}),
    ]:
        result = await memory.one("bob", name, arguments)
        assert isinstance(result, str) and result.startswith(f"Error: invalid arguments for tool '{name}'"), result
        assert "alice's diary" not in result
    # bob forgets his own "secret": alice's stays
    assert (await memory.one("bob", "forget_fact", {"key": "secret"}))["forgotten"] is True
    assert [f["value"] for f in await memory.one("alice", "retrieve_facts", {"query": "diary"})] == ["alice's diary"]


async def test_agents_have_separate_memories(postgres_target):
    one, other = Memory(postgres_target.dsn, "agent-one"), Memory(postgres_target.dsn, "agent-two")
    try:
        await one.one("alice", "store_fact", {"key": "k", "value": "for agent one"})
        assert await other.one("alice", "retrieve_facts", {"query": "agent"}) == []
    finally:
        await one.agent.close()
        await other.agent.close()


async def test_auto_recall_adds_only_the_callers_relevant_facts(postgres_target):
    memory = Memory(postgres_target.dsn)
    try:
        await memory.call("alice", ("store_fact", {"key": "favourite_colour", "value": "green"}),
                          ("store_fact", {"key": "dog", "value": "a beagle called Rex"}))
        await memory.one("bob", "store_fact", {"key": "favourite_colour", "value": "orange"})

        await memory.call("alice", ("retrieve_facts", {"query": "x"}), message="What is my favourite colour?")
        system = memory.system_message()
        assert "favourite_colour" in system and '"green"' in system
        assert "orange" not in system and "beagle" not in system  # bob's fact; an irrelevant one

        await memory.call("carol", ("retrieve_facts", {"query": "x"}), message="What is my favourite colour?")
        assert "favourite_colour" not in memory.system_message()  # carol has no facts
    finally:
        await memory.agent.close()


async def test_auto_recall_can_be_turned_off_and_limited(postgres_target):
    quiet = Memory(postgres_target.dsn, auto_recall=False)
    limited = Memory(postgres_target.dsn, recall_limit=1)
    try:
        await quiet.call("alice", *[("store_fact", {"key": f"colour_{i}", "value": "colour"}) for i in range(3)])
        await quiet.call("alice", ("retrieve_facts", {"query": "x"}), message="colour?")
        assert "colour_" not in quiet.system_message()
        await limited.call("alice", ("retrieve_facts", {"query": "x"}), message="colour?")
        assert limited.system_message().count("- colour_") == 1
    finally:
        await quiet.agent.close()
        await limited.agent.close()


async def test_bad_input_is_a_tool_error_and_the_request_completes(postgres_target):
    memory = Memory(postgres_target.dsn, max_value_bytes=100)
    try:
        too_big, not_object, empty_key, bad_limit, fine = await memory.call(
            "alice",
            ("store_fact", {"key": "essay", "value": "x" * 200}),
            ("store_fact", {"key": "k", "value": 1, "metadata": ["not", "an", "object"]}),
            ("store_fact", {"key": "  ", "value": 1}),
            ("retrieve_facts", {"query": "k", "limit": 1000}),
            ("store_fact", {"key": "small", "value": "x" * 50}),
        )
        assert "ValueError: value is 202 bytes as JSON; the limit is 100 bytes" in too_big
        assert "metadata" in not_object and "valid dictionary" in not_object
        assert "key must be a non-empty string" in empty_key
        assert "limit must be between 1 and 100" in bad_limit
        assert fine["created"] is True
        assert [f["key"] for f in await memory.one("alice", "retrieve_facts", {"query": ""})] == ["small"]
    finally:
        await memory.agent.close()


async def test_metadata_not_an_object_is_refused_when_called_from_code(memory):
    context = memory.agent.new_context([], None, False)
    with pytest.raises(ValueError, match="metadata must be a JSON object, got list"):
        await memory.skill.store_fact("k", 1, ["x"], context=context)


async def test_fifty_concurrent_stores_all_land(memory):
    async def store(i: int) -> None:
        agent = memory.agent
        context = agent.new_context([], None, False)
        context.peer_user_id = "alice"
        await memory.skill.store_fact(f"fact_{i}", {"n": i}, context=context)

    await asyncio.gather(*(store(i) for i in range(50)))
    found = await memory.one("alice", "retrieve_facts", {"query": "", "limit": 100})
    assert sorted(f["value"]["n"] for f in found) == list(range(50))


def test_last_user_text_reads_strings_and_text_parts():
    assert last_user_text([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a"
    assert last_user_text([{"role": "user", "content": [
        {"type": "text", "text": "colour"}, {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "please"}]}]) == "colour please"
    assert last_user_text([{"role": "system", "content": "s"}]) == ""


async def test_an_unreachable_database_at_start_up_is_a_clear_error():
    from robutler_server.testing import free_port
    from robutler_core.postgres import DatabaseUnavailableError

    memory = Memory(f"postgresql://robutler:hunter2@127.0.0.1:{free_port()}/memory")
    with pytest.raises(DatabaseUnavailableError, match=r"PostgreSQL at postgresql://robutler@127\.0\.0\.1:\d+/memory is unavailable"):
        await memory.agent.initialize()
    await memory.agent.close()  # closing a skill that never opened is fine


async def test_a_closed_agent_opens_its_memory_again_on_the_next_request(memory):
    await memory.one("alice", "store_fact", {"key": "k", "value": "kept"})
    await memory.agent.close()
    assert memory.skill.database is None
    assert [f["value"] for f in await memory.one("alice", "retrieve_facts", {"query": "k"})] == ["kept"]
