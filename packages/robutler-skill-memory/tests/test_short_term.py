"""short_term_memory through the agent: conversations, identity, the window, the tools."""

import asyncio
import json

import pytest

from robutler_core import Agent
from robutler_core.errors import BadRequestError, ConfigurationError, UpstreamError
from robutler_core.testing import ScriptedModel, finish_chunks, run_request, text_chunks, tool_call_chunks

from robutler_skill_memory.conversations import MemoryConversations
from robutler_skill_memory.short_term import ShortTermMemorySkill, conversation_id_of

from memory_test_helpers import Identity, RecordingModel, contents


def make_agent(model=None, **config):
    model = model or RecordingModel()
    return Agent("memo", model=model, skills={"auth": Identity(), "short_term_memory": ShortTermMemorySkill(config)})


def user(text):
    return [{"role": "user", "content": text}]


async def ask(agent, text, conversation=None, user_id=None, stream=False, via="header", **params):
    headers = {}
    if user_id:
        headers["X-User"] = user_id
    if conversation and via == "header":
        headers["X-Conversation-Id"] = conversation
    elif conversation:
        params["metadata"] = {"conversation_id": conversation, **params.get("metadata", {})}
    context = agent.new_context(user(text), None, stream, headers=headers, **params)
    return await run_request(agent, user(text), stream=stream, context=context)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("via", ["header", "metadata"])
async def test_conversation_id_continues_a_conversation(stream, via):
    model = RecordingModel()
    agent = make_agent(model)
    await ask(agent, "my name is Ada", "c1", stream=stream, via=via)
    answer = await ask(agent, "what is my name?", "c1", stream=stream, via=via)
    assert contents(model.seen[-1]) == [
        ("user", "my name is Ada"),
        ("assistant", 'TestModel received: "my name is Ada"'),
        ("user", "what is my name?"),
    ]
    assert answer["choices"][0]["message"]["content"] == 'TestModel received: "what is my name?"'


async def test_a_different_id_or_none_starts_afresh():
    model = RecordingModel()
    agent = make_agent(model)
    await ask(agent, "secret is 42", "c1")
    await ask(agent, "hello", "c2")
    assert contents(model.seen[-1]) == [("user", "hello")]
    await ask(agent, "hello again")
    assert contents(model.seen[-1]) == [("user", "hello again")]
    await ask(agent, "and?", "c2")
    assert contents(model.seen[-1])[0] == ("user", "hello")


async def test_two_users_with_one_id_do_not_share_it():
    model = RecordingModel()
    agent = make_agent(model)
    await ask(agent, "alice's secret", "shared", user_id="alice")
    await ask(agent, "bob here", "shared", user_id="bob")
    assert contents(model.seen[-1]) == [("user", "bob here")]
    await ask(agent, "anonymous", "shared")  # the anonymous partition is a third one
    assert contents(model.seen[-1]) == [("user", "anonymous")]
    await ask(agent, "me again", "shared", user_id="alice")
    assert contents(model.seen[-1])[0] == ("user", "alice's secret")
    assert len(contents(model.seen[-1])) == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_and_results_are_stored_with_the_answer(stream):
    turns = [
        text_chunks("Checking.") + tool_call_chunks([("get_recent_messages", {"limit": 5})]) + finish_chunks("tool_calls"),
        text_chunks("Done.") + finish_chunks("stop"),
        text_chunks("Second.") + finish_chunks("stop"),
    ]
    model = ScriptedModel(turns)
    agent = make_agent(model)
    await ask(agent, "first", "c", stream=stream)
    await ask(agent, "second", "c", stream=stream)
    seen = model.calls[-1][0]
    assert [m["role"] for m in seen] == ["user", "assistant", "tool", "assistant", "user"]
    assert seen[1]["tool_calls"][0]["function"]["name"] == "get_recent_messages"
    assert seen[2]["tool_call_id"] == seen[1]["tool_calls"][0]["id"]
    assert json.loads(seen[2]["content"]) == [{"role": "user", "content": "first"}]
    assert seen[3]["content"] == "Checking.Done."


@pytest.mark.parametrize(("max_messages", "roles"), [
    (5, ["user", "assistant", "tool", "assistant", "user"]),
    (4, ["user"]),  # the tool turn fits but the question before it does not: no dangling history
    (2, ["user"]),
])
async def test_window_over_a_stored_tool_turn_keeps_the_conversation_valid(max_messages, roles):
    turns = [
        tool_call_chunks([("get_recent_messages", {})]) + finish_chunks("tool_calls"),
        text_chunks("Done.") + finish_chunks("stop"),
        text_chunks("Second.") + finish_chunks("stop"),
    ]
    model = ScriptedModel(turns)
    agent = make_agent(model, max_messages=max_messages)
    await ask(agent, "first", "c")
    await ask(agent, "second", "c")
    assert [m["role"] for m in model.calls[-1][0]] == roles


async def test_external_tool_calls_are_stored_and_the_client_sends_only_results():
    external = [{"type": "function", "function": {"name": "ask_user", "parameters": {"type": "object", "properties": {}}}}]
    turns = [
        tool_call_chunks([("ask_user", {})]) + finish_chunks("tool_calls"),
        text_chunks("Thanks.") + finish_chunks("stop"),
    ]
    model = ScriptedModel(turns)
    agent = make_agent(model)
    context = agent.new_context(user("go"), external, False, headers={"x-conversation-id": "c"})
    first = await agent.run(user("go"), external, context=context)
    call = first["choices"][0]["message"]["tool_calls"][0]
    result = [{"role": "tool", "tool_call_id": call["id"], "content": "blue"}]
    context = agent.new_context(result, external, False, headers={"x-conversation-id": "c"})
    await agent.run(result, external, context=context)
    assert [m["role"] for m in model.calls[-1][0]] == ["user", "assistant", "tool"]
    assert model.calls[-1][0][1]["tool_calls"][0]["id"] == call["id"]


async def test_failed_request_stores_nothing():
    model = ScriptedModel([UpstreamError("down"), text_chunks("ok") + finish_chunks("stop")])
    agent = make_agent(model)
    with pytest.raises(UpstreamError):
        await ask(agent, "lost", "c")
    await ask(agent, "kept", "c")
    assert contents(model.calls[-1][0]) == [("user", "kept")]


async def test_client_system_message_is_kept_first_and_never_stored():
    model = RecordingModel()
    agent = make_agent(model)
    messages = [{"role": "system", "content": "Be terse."}, *user("one")]
    for text in ("one", "two"):
        messages[-1] = {"role": "user", "content": text}
        context = agent.new_context(messages, None, False, headers={"x-conversation-id": "c"})
        await agent.run(messages, context=context)
    assert [(m["role"], m["content"]) for m in model.seen[-1]] == [
        ("system", "Be terse."), ("user", "one"), ("assistant", 'TestModel received: "one"'), ("user", "two"),
    ]


async def test_window_applies_to_what_the_model_sees_but_storage_keeps_more():
    model = RecordingModel()
    agent = make_agent(model, max_messages=3)
    for i in range(4):
        await ask(agent, f"m{i}", "c")
    assert contents(model.seen[-1]) == [("user", "m2"), ("assistant", 'TestModel received: "m2"'), ("user", "m3")]
    store = agent.skills["short_term_memory"].store
    assert len(await store.load(("memo", "", "c"))) == 8


async def test_window_applies_without_a_conversation_too():
    model = RecordingModel()
    agent = make_agent(model, max_tokens=30)
    long_history = [{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "ok"}, *user("now")]
    await agent.run(long_history)
    assert contents(model.seen[-1]) == [("user", "now")]


async def test_messages_the_window_left_out_are_stored_too():
    agent = make_agent(max_messages=1)
    messages = [*user("a"), {"role": "assistant", "content": "b"}, *user("c")]
    context = agent.new_context(messages, None, False, headers={"x-conversation-id": "c"})
    await agent.run(messages, context=context)
    stored = await agent.skills["short_term_memory"].store.load(("memo", "", "c"))
    assert [m["content"] for m in stored] == ["a", "b", "c", 'TestModel received: "c"']


async def test_get_recent_messages_and_clear_conversation_tools():
    turns = [
        tool_call_chunks([("clear_conversation", {})]) + finish_chunks("tool_calls"),
        text_chunks("Forgotten.") + finish_chunks("stop"),
        text_chunks("Hi.") + finish_chunks("stop"),
    ]
    model = ScriptedModel([text_chunks("noted") + finish_chunks("stop"), *turns])
    agent = make_agent(model)
    await ask(agent, "remember me", "c")
    await ask(agent, "forget it all", "c")
    assert model.calls[1][0][0]["content"] == "remember me"
    tool_result = model.calls[2][0][-1]
    assert tool_result["role"] == "tool" and tool_result["content"] == "The conversation was cleared."
    await ask(agent, "hello", "c")
    assert contents(model.calls[-1][0]) == [("user", "hello")]  # nothing of before, nor the clearing request


async def test_get_recent_messages_limit_and_without_a_conversation():
    skill = ShortTermMemorySkill()
    agent = Agent("memo", model=RecordingModel(), skills={"short_term_memory": skill})
    await agent.initialize()
    tool = {t.name: t for t in agent.tools_for_scope("all")}["get_recent_messages"]
    assert tool.definition()["function"]["parameters"]["properties"]["limit"]["maximum"] == 200
    context = agent.new_context([*user("a"), {"role": "assistant", "content": "b"}, *user("c")], None, False)
    assert await tool.invoke('{"limit": 2}', context) == [{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    clear = {t.name: t for t in agent.tools_for_scope("all")}["clear_conversation"]
    assert "no stored conversation" in await clear.invoke("{}", context)


async def test_conversation_id_is_taken_out_of_metadata_so_the_model_is_not_sent_it():
    model = ScriptedModel([text_chunks("a") + finish_chunks("stop"), text_chunks("b") + finish_chunks("stop")])
    agent = make_agent(model)
    await ask(agent, "x", "c", via="metadata")
    assert "metadata" not in model.calls[-1][2]
    # Other metadata stays, and the model skill refuses it as it would without memory.
    with pytest.raises(BadRequestError, match="'metadata' is not supported"):
        await ask(agent, "x", "c", via="metadata", metadata={"tag": "t"})


@pytest.mark.parametrize(("headers", "params", "message"), [
    ({"x-conversation-id": "a"}, {"metadata": {"conversation_id": "b"}}, "name different conversations"),
    ({}, {"metadata": {"conversation_id": ""}}, "non-empty string"),
    ({}, {"metadata": {"conversation_id": 7}}, "non-empty string"),
    ({"x-conversation-id": "x" * 257}, {}, "at most 256"),
])
async def test_bad_conversation_ids_are_400(headers, params, message):
    agent = make_agent()
    context = agent.new_context(user("hi"), None, False, headers=headers, **params)
    with pytest.raises(BadRequestError, match=message) as raised:
        await agent.run(user("hi"), context=context)
    assert raised.value.status_code == 400


def test_same_id_in_header_and_metadata_is_fine():
    agent = make_agent()
    context = agent.new_context(user("hi"), None, False, headers={"x-conversation-id": "a"},
                                metadata={"conversation_id": "a", "k": "v"})
    assert conversation_id_of(context) == "a"
    assert context.params["metadata"] == {"k": "v"}


def test_config_is_checked():
    with pytest.raises(ConfigurationError, match="max_messages"):
        ShortTermMemorySkill({"max_messages": 0})
    with pytest.raises(ConfigurationError, match="max_mesages"):
        ShortTermMemorySkill({"max_mesages": 10})
    assert ShortTermMemorySkill().storage == "memory"
    assert ShortTermMemorySkill({"dsn": "postgresql://x@h/db"}).storage == "postgres"


async def test_memory_store_is_an_lru_bounded_by_max_conversations():
    store = MemoryConversations(max_conversations=2, max_stored_messages=3)
    for name in ("a", "b"):
        await store.append(("x", "", name), user(name))
    await store.load(("x", "", "a"))  # "a" becomes the most recently used
    await store.append(("x", "", "c"), user("c"))
    assert len(store) == 2
    assert await store.load(("x", "", "b")) == []
    assert await store.load(("x", "", "a")) == user("a")
    await store.append(("x", "", "a"), [{"role": "assistant", "content": "1"}, *user("2"), {"role": "assistant", "content": "3"}])
    assert [m["content"] for m in await store.load(("x", "", "a"))] == ["2", "3"]  # whole exchanges, from a user message


async def test_stored_messages_are_copies():
    store = MemoryConversations(max_conversations=2, max_stored_messages=10)
    message = {"role": "user", "content": "a"}
    await store.append(("x", "", "c"), [message])
    message["content"] = "changed"
    loaded = await store.load(("x", "", "c"))
    loaded[0]["content"] = "changed too"
    assert await store.load(("x", "", "c")) == user("a")


class SlowModel(ScriptedModel):
    """Streams its first chunks, then waits (a slow provider) until cancelled."""

    async def chat_completion_stream(self, messages, tools=None, **params):
        self.calls.append((messages, tools, params))
        for chunk in text_chunks("the start of a long answer"):
            yield chunk
        await asyncio.sleep(60)


async def test_a_stream_the_client_abandons_stores_nothing():
    agent = make_agent(SlowModel([]))
    context = agent.new_context(user("abandoned"), None, True, headers={"x-conversation-id": "c"})
    stream = agent.run_streaming(user("abandoned"), context=context)
    assert (await anext(stream))["choices"][0]["delta"]["role"] == "assistant"
    await stream.aclose()  # the client went away mid-answer; the model call is cancelled
    assert context.finish_reason is None
    assert await agent.skills["short_term_memory"].store.load(("memo", "", "c")) == []
