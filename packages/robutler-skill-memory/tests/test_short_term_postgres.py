"""short_term_memory on PostgreSQL: shared by agent instances (as workers are), durable,
partitioned, safe under concurrent requests. Runs on the embedded PostgreSQL, and on
``ROBUTLER_TEST_POSTGRES_DSN`` when set (the ``postgres_target`` fixture)."""

import asyncio

import pytest

from robutler_core import Agent
from robutler_core.errors import ServiceUnavailableError

from robutler_skill_memory.conversations import PostgresConversations
from robutler_skill_memory.short_term import ShortTermMemorySkill

from memory_test_helpers import Identity, RecordingModel, contents


def worker(target, name="memo", **config):
    """One agent instance with its own skill and pool, as one server worker has."""
    model = RecordingModel()
    skill = ShortTermMemorySkill({"dsn": target.dsn, **config})
    return Agent(name, model=model, skills={"auth": Identity(), "short_term_memory": skill}), model


async def ask(agent, text, conversation, user_id=None):
    headers = {"x-conversation-id": conversation, **({"x-user": user_id} if user_id else {})}
    messages = [{"role": "user", "content": text}]
    return await agent.run(messages, context=agent.new_context(messages, None, False, headers=headers))


async def test_two_workers_share_conversations_and_they_survive_a_restart(postgres_target):
    (first, _), (second, seen_by_second) = worker(postgres_target), worker(postgres_target)
    try:
        assert isinstance((await _store(first)), PostgresConversations)
        await ask(first, "my name is Ada", "c1", user_id="u")
        await ask(second, "what is my name?", "c1", user_id="u")
        assert contents(seen_by_second.seen[-1]) == [
            ("user", "my name is Ada"), ("assistant", 'TestModel received: "my name is Ada"'),
            ("user", "what is my name?"),
        ]
    finally:
        await first.close()
        await second.close()
    restarted, seen = worker(postgres_target)
    try:
        await ask(restarted, "again", "c1", user_id="u")
        assert len(contents(seen.seen[-1])) == 5
    finally:
        await restarted.close()


async def test_users_and_agents_are_partitioned(postgres_target):
    (agent, seen), (other_agent, seen_by_other) = worker(postgres_target), worker(postgres_target, name="other")
    try:
        await ask(agent, "alice's secret", "same", user_id="alice")
        await ask(agent, "bob here", "same", user_id="bob")
        assert contents(seen.seen[-1]) == [("user", "bob here")]
        await ask(agent, "anonymous", "same")
        assert contents(seen.seen[-1]) == [("user", "anonymous")]
        await ask(other_agent, "other agent", "same", user_id="alice")
        assert contents(seen_by_other.seen[-1]) == [("user", "other agent")]
        await ask(agent, "alice again", "same", user_id="alice")
        assert contents(seen.seen[-1])[0] == ("user", "alice's secret")
    finally:
        await agent.close()
        await other_agent.close()


async def test_concurrent_requests_of_one_conversation_all_land_each_in_one_piece(postgres_target):
    (first, _), (second, _) = worker(postgres_target), worker(postgres_target)
    try:
        await first.initialize()
        await second.initialize()
        await asyncio.gather(*[ask((first, second)[i % 2], f"q{i}", "busy") for i in range(20)])
        stored = await (await _store(first)).load(("memo", "", "busy"))
        assert len(stored) == 40
        for question, answer in zip(stored[::2], stored[1::2]):
            assert question["role"] == "user"
            assert answer["content"] == f'TestModel received: "{question["content"]}"'
        assert sorted(m["content"] for m in stored[::2]) == sorted(f"q{i}" for i in range(20))
    finally:
        await first.close()
        await second.close()


async def test_stored_conversation_is_pruned_to_max_stored_messages_and_cleared(postgres_target):
    agent, _ = worker(postgres_target, max_stored_messages=5)
    try:
        for i in range(4):
            await ask(agent, f"q{i}", "c")
        store = await _store(agent)
        stored = await store.load(("memo", "", "c"))
        assert [m["content"] for m in stored] == ["q2", 'TestModel received: "q2"', "q3", 'TestModel received: "q3"']
        await store.clear(("memo", "", "c"))
        assert await store.load(("memo", "", "c")) == []
    finally:
        await agent.close()


async def _store(agent):
    await agent.initialize()
    return agent.skills["short_term_memory"].store


def test_storage_setting_wins_over_dsn():
    assert ShortTermMemorySkill({"storage": "postgres"}).storage == "postgres"
    assert ShortTermMemorySkill({"storage": "memory", "dsn": "postgresql://x@h/db"}).storage == "memory"


async def test_embedded_postgres_when_no_dsn_is_configured(embedded_postgres):
    agent = Agent("embedded_memo_test", model=RecordingModel(),
                  skills={"short_term_memory": ShortTermMemorySkill({"storage": "postgres"})})
    try:
        await ask(agent, "hello", "c-embedded")
        store = await _store(agent)
        assert store.database.embedded
        assert len(await store.load(("embedded_memo_test", "", "c-embedded"))) == 2
        await store.clear(("embedded_memo_test", "", "c-embedded"))
    finally:
        await agent.close()


async def test_a_database_that_went_away_is_a_503_and_an_unsaved_answer_is_still_answered(postgres_target):
    agent, _ = worker(postgres_target)
    try:
        await ask(agent, "hello", "c")
        store = await _store(agent)
        store.database.pool.terminate()  # every connection gone, as when the server stops
        with pytest.raises(ServiceUnavailableError, match="cannot load the conversation") as raised:
            await ask(agent, "again", "c")
        assert raised.value.status_code == 503 and raised.value.code == "memory_unavailable"
        # Without a conversation id nothing is loaded or stored: the request is answered.
        messages = [{"role": "user", "content": "no id"}]
        answer = await agent.run(messages)
        assert answer["choices"][0]["message"]["content"] == 'TestModel received: "no id"'
    finally:
        await agent.close()
