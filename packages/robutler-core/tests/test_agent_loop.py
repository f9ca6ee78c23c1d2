import asyncio
import json

import pytest

from robutler_core import Agent, Skill, get_context, hook, prompt, tool
from robutler_core.errors import BadRequestError, ConfigurationError, MaxTurnsExceeded, PermissionDeniedError, RateLimitError
from robutler_core.testing import ScriptedModel, TestModel, completion_to_chunks, finish_chunks, run_request, text_chunks, tool_call_chunks
from robutler_core.wire import ChunkAssembler

USER = [{"role": "user", "content": "hello"}]
EXTERNAL = [{"type": "function", "function": {"name": "ask_user", "description": "Ask the human.",
             "parameters": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}}}]


class Calculator(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


def message(completion):
    return completion["choices"][0]["message"]


async def collect(agent, messages, tools=None, **params):
    return [chunk async for chunk in agent.run_streaming(messages, tools, **params)]


async def test_plain_answer_quotes_user():
    completion = await Agent("a", model="test").run(USER)
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "a"
    assert message(completion) == {"role": "assistant", "content": 'TestModel received: "hello"'}
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["total_tokens"] == completion["usage"]["prompt_tokens"] + completion["usage"]["completion_tokens"] > 0


async def test_server_side_tool_runs_within_one_request():
    completion = await Agent("a", model="test", skills={"calc": Calculator()}).run(USER)
    assert message(completion)["content"] == "Tool results: add returned 2"  # a=1, b=1 from the schema
    assert "tool_calls" not in message(completion)


async def test_external_tool_call_goes_back_to_client_then_conversation_continues():
    agent = Agent("a", model="test")
    completion = await agent.run(USER, tools=EXTERNAL)
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    calls = message(completion)["tool_calls"]
    assert [(c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("function", "ask_user", {"question": "a"})
    ]
    follow_up = USER + [message(completion), {"role": "tool", "tool_call_id": calls[0]["id"], "content": "blue"}]
    final = await agent.run(follow_up, tools=EXTERNAL)
    assert message(final)["content"] == "Tool results: ask_user returned blue"


async def test_streamed_external_tool_call_is_sent_as_deltas():
    chunks = await collect(Agent("a", model="test"), USER, EXTERNAL, stream_options={"include_usage": True})
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    fragments = [d for c in chunks for d in (c["choices"][0]["delta"].get("tool_calls", []) if c["choices"] else [])]
    assert len(fragments) > 2 and fragments[0]["function"]["name"] == "ask_user" and fragments[0]["id"]
    assert "".join(f["function"].get("arguments", "") for f in fragments) == '{"question": "a"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_mixed_turn_returns_the_external_calls_and_the_follow_up_runs_the_server_tool_once(stream):
    runs = []

    class Counted(Skill):
        @tool
        def lookup(self, key: str) -> str:
            runs.append(key)
            return f"value of {key}"

    model = ScriptedModel([
        text_chunks("Checking. ") + tool_call_chunks([("lookup", {"key": "k"}), ("ask_user", {"question": "q?"})]) + finish_chunks("tool_calls"),
        tool_call_chunks([("lookup", {"key": "k"})]) + finish_chunks("tool_calls"),  # the follow-up asks again
        text_chunks("done") + finish_chunks("stop"),
    ])
    agent = Agent("a", model=model, skills={"c": Counted()})
    first = await run_request(agent, USER, stream=stream, tools=EXTERNAL)
    answer = message(first)
    assert first["choices"][0]["finish_reason"] == "tool_calls" and answer["content"] == "Checking. "
    assert [c["function"]["name"] for c in answer["tool_calls"]] == ["ask_user"]
    assert runs == []  # not run in the mixed turn: its result could not reach the follow-up

    history = USER + [{k: v for k, v in answer.items() if k in ("role", "content", "tool_calls")},
                      {"role": "tool", "tool_call_id": answer["tool_calls"][0]["id"], "content": "blue"}]
    final = await run_request(agent, history, stream=stream, tools=EXTERNAL)
    assert message(final)["content"] == "done"
    assert runs == ["k"]  # ran exactly once over both requests
    seen = model.calls[2][0]  # what the model saw when it answered
    assert seen[-1] == {"role": "tool", "tool_call_id": seen[-2]["tool_calls"][0]["id"], "content": "value of k"}
    assert {"role": "tool", "tool_call_id": answer["tool_calls"][0]["id"], "content": "blue"} in seen


async def test_tool_error_goes_back_to_model_and_request_goes_on():
    class Broken(Skill):
        @tool
        def explode(self) -> str:
            raise RuntimeError("boom")

    completion = await Agent("a", model="test", skills={"b": Broken()}).run(USER)
    assert message(completion)["content"] == "Tool results: explode returned Error: tool 'explode' failed: RuntimeError: boom"


async def test_invalid_arguments_go_back_to_model():
    model = ScriptedModel([
        {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": "x"}'}}]}}]},
        text_chunks("done") + finish_chunks("stop"),
    ])
    completion = await Agent("a", model=model, skills={"calc": Calculator()}).run(USER)
    tool_message = model.calls[1][0][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "c1"
    assert "invalid arguments for tool 'add': a: Input should be a valid integer" in tool_message["content"]
    assert "b: Field required" in tool_message["content"]
    assert message(completion)["content"] == "done"


async def test_unknown_tool_name_from_model_is_an_error_result():
    model = ScriptedModel([tool_call_chunks([("rm_rf", {})]) + finish_chunks("tool_calls"), text_chunks("ok")])
    await Agent("a", model=model, skills={"calc": Calculator()}).run(USER)
    assert model.calls[1][0][-1]["content"] == "Error: there is no tool named 'rm_rf'; available tools: add"


async def test_scripted_streaming_reassembles_argument_deltas_and_text_of_every_turn():
    model = ScriptedModel([
        text_chunks("Let me add. ") + tool_call_chunks([("add", {"a": 20, "b": 22})], pieces=5) + finish_chunks("tool_calls"),
        text_chunks("It is 42.") + finish_chunks("stop", {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ])
    agent = Agent("a", model=model, skills={"calc": Calculator()})
    chunks = await collect(agent, USER)
    assembler = ChunkAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.content == "Let me add. It is 42."
    assert "tool_calls" not in assembler.message()  # server-side calls are not streamed
    assert assembler.finish_reason == "stop"
    assert model.calls[1][0][-1] == {"role": "tool", "tool_call_id": model.calls[1][0][-2]["tool_calls"][0]["id"], "content": "42"}


async def test_tool_calls_of_one_turn_run_concurrently():
    barrier = asyncio.Barrier(2)

    class Waiters(Skill):
        @tool
        async def first(self) -> str:
            await barrier.wait()  # returns only when the other call is running too
            return "1"

        @tool
        async def second(self) -> str:
            await barrier.wait()
            return "2"

    completion = await asyncio.wait_for(Agent("a", model="test", skills={"w": Waiters()}).run(USER), timeout=10)
    assert message(completion)["content"] == "Tool results: first returned 1; second returned 2"


async def test_max_turns_ends_a_loop():
    loop_turn = lambda: tool_call_chunks([("add", {"a": 1, "b": 1})]) + finish_chunks("tool_calls")
    agent = Agent("a", model=ScriptedModel([loop_turn() for _ in range(3)]), skills={"calc": Calculator()}, max_turns=3)
    with pytest.raises(MaxTurnsExceeded, match="made 3 model calls without a final answer"):
        await agent.run(USER)


async def test_external_tool_may_not_shadow_a_server_tool():
    shadow = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    with pytest.raises(BadRequestError, match="'add' is the name of one of the agent's own tools") as info:
        await Agent("a", model="test", skills={"calc": Calculator()}).run(USER, tools=shadow)
    assert info.value.param == "tools.0.function.name"


async def test_prompts_join_instructions_in_priority_order():
    class Prompts(Skill):
        @prompt(priority=20)
        def late(self) -> str:
            return "second"

        @prompt(priority=10)
        async def early(self, context) -> str:
            return f"first for {context.auth_scope}"

        @prompt(priority=5, scope="admin")
        def hidden(self) -> str:
            return "admin only"

    model = ScriptedModel([text_chunks("ok")])
    await Agent("a", "Be brief.", model=model, skills={"p": Prompts()}).run(USER)
    assert model.calls[0][0][0] == {"role": "system", "content": "Be brief.\n\nfirst for all\n\nsecond"}


async def test_context_is_per_request_under_concurrency():
    class Echo(Skill):
        @hook("on_connection")
        def remember(self, context):
            context.set("who", context.messages[-1]["content"])

        @tool
        async def whoami(self, context) -> str:
            await asyncio.sleep(0.01)
            assert get_context() is context
            return context.get("who")

    agent = Agent("a", model="test", skills={"e": Echo()})
    results = await asyncio.gather(*(agent.run([{"role": "user", "content": f"user{i}"}]) for i in range(30)))
    assert [message(r)["content"] for r in results] == [f"Tool results: whoami returned user{i}" for i in range(30)]
    assert get_context() is None


def test_agent_name_must_be_url_safe():
    with pytest.raises(ConfigurationError, match="not URL-safe"):
        Agent("my agent/1", model="test")


def test_two_tools_with_one_name_clash():
    class Other(Skill):
        @tool
        def add(self, x: int) -> int:
            return x

    with pytest.raises(ConfigurationError, match="tool 'add' from skill Other clashes with the one from skill Calculator"):
        Agent("a", model="test", skills={"calc": Calculator(), "other": Other()})


async def test_provider_error_propagates_and_agent_without_model_fails_clearly():
    with pytest.raises(RateLimitError):
        await Agent("a", model=ScriptedModel([RateLimitError("slow down", retry_after=3)])).run(USER)
    with pytest.raises(ConfigurationError, match="has no model"):
        await Agent("a").run(USER)


async def test_a_failing_guard_cancels_and_awaits_the_sibling_tool_calls():
    events = []

    class Tools(Skill):
        @tool
        async def slow(self) -> str:
            events.append("slow started")
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                events.append("slow cancelled")
                raise
            events.append("slow finished")
            return "late"

        @tool
        async def guarded(self) -> str:
            return "never"

        @hook("before_toolcall")
        async def guard(self, tool_call):
            if tool_call["function"]["name"] == "guarded":
                await asyncio.sleep(0.01)  # the sibling is running by now
                raise PermissionDeniedError("no")

    model = ScriptedModel([tool_call_chunks([("slow", {}), ("guarded", {})]) + finish_chunks("tool_calls")])
    with pytest.raises(PermissionDeniedError, match="no"):
        await asyncio.wait_for(Agent("a", model=model, skills={"t": Tools()}).run(USER), timeout=3)
    assert events == ["slow started", "slow cancelled"]  # cancelled before the request ended


class Obedient(TestModel):
    """The test model, obeying tool_choice: "required" or a named function means a tool call."""

    def __init__(self):
        super().__init__({"model": "obedient"})
        self.tool_choices = []

    def respond(self, messages, tools, tool_choice=None):
        self.tool_choices.append(tool_choice)
        if tools and tool_choice not in (None, "auto", "none"):
            messages = [m for m in messages if m.get("role") != "tool"] + [{"role": "user", "content": "again"}]
        return super().respond(messages, tools)

    async def chat_completion(self, messages, tools=None, **params):
        return self.respond(messages, tools, params.get("tool_choice"))

    async def chat_completion_stream(self, messages, tools=None, **params):
        for chunk in completion_to_chunks(self.respond(messages, tools, params.get("tool_choice"))):
            yield chunk


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "add"}}])
async def test_a_forced_tool_choice_becomes_auto_after_a_turn_that_ran_server_tools(stream, tool_choice):
    model = Obedient()
    agent = Agent("a", model=model, skills={"calc": Calculator()}, max_turns=3)
    completion = await run_request(agent, USER, stream=stream, tool_choice=tool_choice)
    assert completion["choices"][0]["message"]["content"] == "Tool results: add returned 2"
    assert model.tool_choices == [tool_choice, "auto"]
