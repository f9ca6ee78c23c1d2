import asyncio
import logging

import pytest

from robutler_core import Agent, Skill, hook, hookimpl, prompt
from robutler_core.errors import AuthenticationError, ConfigurationError
from robutler_core.testing import ScriptedModel, finish_chunks, run_request, text_chunks

USER = [{"role": "user", "content": "hello"}]


def recorder_skills(log):
    class First(Skill):
        @hook("on_connection", priority=30)
        def conn30(self, context):
            log.append("first.on_connection.30")

        @hook("on_connection", priority=10)
        async def conn10(self, context):
            log.append("first.on_connection.10")

        @hook("finalize_connection")
        def fin(self, context):
            log.append("first.finalize")

    class Second(Skill):
        @hook("on_connection", priority=10)
        def conn10(self, context):
            log.append("second.on_connection.10")

        @hook("on_connection", priority=20, scope="owner")
        def owner_only(self, context):
            log.append("second.owner")

        @hook("finalize_connection", priority=90)
        async def fin(self, context):
            log.append("second.finalize")

    return {"first": First(), "second": Second()}


async def test_hooks_run_by_priority_then_registration_and_scope():
    log = []
    agent = Agent("a", model="test", skills=recorder_skills(log))
    await agent.run(USER)
    assert log == ["first.on_connection.10", "second.on_connection.10", "first.on_connection.30",
                   "first.finalize", "second.finalize"]


async def test_owner_scoped_hook_runs_for_owner_and_admin():
    for scope in ("owner", "admin"):
        log = []
        agent = Agent("a", model="test", skills=recorder_skills(log))
        context = agent.new_context(USER, None, False)
        context.auth_scope = scope
        await agent.run(USER, context=context)
        assert "second.owner" in log


def test_misspelt_event_fails_at_registration():
    class Typo(Skill):
        @hook("on_conection")
        def nope(self, context):
            pass

    with pytest.raises(ConfigurationError, match="on_conection"):
        Agent("a", model="test", skills={"typo": Typo()})


def test_hook_with_unknown_argument_fails_at_registration():
    class Extra(Skill):
        @hook("on_chunk")
        def nope(self, context, chunk, surprise):
            pass

    with pytest.raises(ConfigurationError, match="surprise"):
        Agent("a", model="test", skills={"x": Extra()})


async def test_plain_pluggy_hookimpl_named_after_event_works():
    seen = []

    class Plain(Skill):
        @hookimpl
        def on_connection(self, context):
            seen.append(context.request_id)

    await Agent("a", model="test", skills={"p": Plain()}).run(USER)
    assert len(seen) == 1


async def test_guarding_hook_fails_closed_and_finalize_still_runs_once():
    calls = []

    class Auth(Skill):
        @hook("on_connection")
        def deny(self, context):
            raise AuthenticationError("no token")

        @hook("finalize_connection")
        def fin(self, context):
            calls.append("fin")

    model = ScriptedModel([])
    with pytest.raises(AuthenticationError, match="no token"):
        await Agent("a", model=model, skills={"auth": Auth()}).run(USER)
    assert calls == ["fin"] and model.calls == []


async def test_observing_hook_error_is_logged_and_response_kept(caplog):
    class Flaky(Skill):
        @hook("finalize_connection")
        def fin(self, context):
            raise RuntimeError("billing down")

    with caplog.at_level(logging.ERROR):
        completion = await Agent("a", model="test", skills={"f": Flaky()}).run(USER)
    assert completion["choices"][0]["message"]["content"] == 'TestModel received: "hello"'
    assert "finalize_connection hook" in caplog.text and "billing down" in caplog.text


async def test_on_chunk_and_on_message_may_rewrite():
    class Filter(Skill):
        @hook("on_chunk")
        def upper(self, context, chunk):
            for choice in chunk["choices"]:
                if choice["delta"].get("content"):
                    choice["delta"]["content"] = choice["delta"]["content"].upper()
            return chunk

        @hook("on_message")
        def redact(self, context, message):
            if message["role"] == "user":
                return {**message, "content": message["content"].replace("secret", "[redacted]")}

    model = ScriptedModel([text_chunks("quiet words"), text_chunks("x")])
    agent = Agent("a", model=model, skills={"f": Filter()})
    chunks = [c async for c in agent.run_streaming([{"role": "user", "content": "my secret"}])]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "QUIET WORDS"
    assert model.calls[0][0][-1]["content"] == "my [redacted]"


async def test_closing_a_stream_early_cancels_the_model_and_finalizes_once():
    cancelled = asyncio.Event()
    finalized = []

    class SlowModel(ScriptedModel):
        async def chat_completion_stream(self, messages, tools=None, **params):
            yield text_chunks("first", pieces=1)[1]
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            yield text_chunks("never")[1]

    class Fin(Skill):
        @hook("finalize_connection")
        def fin(self, context):
            finalized.append(context.request_id)

    agent = Agent("a", model=SlowModel([]), skills={"f": Fin()})
    stream = agent.run_streaming(USER)
    assert (await anext(stream))["choices"][0]["delta"]["role"] == "assistant"
    assert (await anext(stream))["choices"][0]["delta"]["content"] == "first"
    await stream.aclose()
    assert cancelled.is_set()
    assert len(finalized) == 1


async def test_runtime_registration_from_a_hook():
    class Adaptive(Skill):
        @hook("on_connection")
        def add_tool(self, context):
            if "late_tool" not in [t.name for t in context.agent.tools_for_scope("all")]:
                def late_tool() -> str:
                    return "late"
                self.register_tool(late_tool)

    completion = await Agent("a", model="test", skills={"ad": Adaptive()}).run(USER)
    # on_connection runs before the loop lists the tools, so the new tool is offered at once.
    assert completion["choices"][0]["message"]["content"] == "Tool results: late_tool returned late"


async def test_equal_priorities_run_in_registration_order_not_by_name():
    log = []

    class Zulu(Skill):  # names sort opposite to the order they are written
        @hook("on_connection")
        def zeta(self, context):
            log.append("zulu.zeta")

        @hook("on_connection")
        def alpha(self, context):
            log.append("zulu.alpha")

        @prompt()
        def zz(self):
            return "written first"

        @prompt()
        def aa(self):
            return "written second"

    class Alpha(Skill):
        @hook("on_connection")
        def middle(self, context):
            log.append("alpha.middle")

    def agent_hook(context):
        log.append("agent hook")

    def runtime_b(context):
        log.append("runtime b")

    def runtime_a(context):
        log.append("runtime a")

    model = ScriptedModel([text_chunks("ok")])
    agent = Agent("a", model=model, skills={"z": Zulu(), "a": Alpha()}, hooks={"on_connection": agent_hook})
    agent.register_hook("on_connection", runtime_b)
    agent.register_hook("on_connection", runtime_a)
    await agent.run(USER)
    assert log == ["zulu.zeta", "zulu.alpha", "alpha.middle", "agent hook", "runtime b", "runtime a"]
    assert model.calls[0][0][0]["content"] == "written first\n\nwritten second"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failing_prompt_fails_the_request_unless_it_may_be_skipped(stream, caplog):
    log = []

    class Prompts(Skill):
        @prompt()
        def memory(self):
            raise AuthenticationError("memory needs a user")

        @hook("finalize_connection")
        def finalize(self, context):
            log.append("finalized")

    model = ScriptedModel([text_chunks("never")])
    with pytest.raises(AuthenticationError, match="memory needs a user"):
        await run_request(Agent("a", "Base.", model=model, skills={"p": Prompts()}), USER, stream=stream)
    assert model.calls == [] and log == ["finalized"]

    class Optional(Skill):
        @prompt(on_error="skip")
        def extra(self):
            raise RuntimeError("no extra today")

    model = ScriptedModel([text_chunks("ok")])
    with caplog.at_level(logging.ERROR):
        await run_request(Agent("a", "Base.", model=model, skills={"o": Optional()}), USER, stream=stream)
    assert model.calls[0][0][0] == {"role": "system", "content": "Base."}
    assert "failed; left out (on_error='skip')" in caplog.text and "no extra today" in caplog.text
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        prompt(on_error="ignore")


async def test_a_hook_added_after_requests_without_one_runs_on_the_next_request():
    """Events with no hook are not dispatched; a hook registered later is (the decision is
    made again once the agent's hooks change)."""
    agent = Agent("late", model="test")
    assert not agent.has_hooks("on_message")
    first = await agent.run(USER)
    assert first["choices"][0]["message"]["content"] == 'TestModel received: "hello"'
    chunks = [chunk async for chunk in agent.run_streaming(USER)]
    assert chunks and all("shout" not in str(chunk) for chunk in chunks)

    agent.register_hook("on_message", lambda message: {**message, "content": message["content"].upper()})
    agent.register_hook("on_chunk", lambda chunk: {**chunk, "shout": True})
    assert agent.has_hooks("on_message") and agent.has_hooks("on_chunk")
    second = await agent.run(USER)
    assert second["choices"][0]["message"]["content"] == 'TESTMODEL RECEIVED: "HELLO"'
    chunks = [chunk async for chunk in agent.run_streaming(USER)]
    assert chunks and all(chunk["shout"] for chunk in chunks)
