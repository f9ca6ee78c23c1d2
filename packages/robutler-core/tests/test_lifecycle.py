"""The whole lifecycle of real runs: event order across skills, rewriting, dropping, blocking."""

import asyncio

import pytest

from robutler_core import DROP, Agent, Skill, ToolCallBlocked, hook, prompt, tool
from robutler_core.errors import ConfigurationError, PermissionDeniedError, RateLimitError
from robutler_core.testing import ScriptedModel, finish_chunks, run_request, text_chunks, tool_call_chunks

USER = [{"role": "user", "content": "what is the weather"}]


def recorder(log):
    """Two skills and agent-level hooks that log every event with its priority."""

    class Audit(Skill):
        @hook("on_connection", priority=20)
        def connection(self, context):
            log.append("audit.on_connection.20")

        @hook("on_message", priority=20)
        def message(self, context, message):
            log.append(f"audit.on_message.{message['role']}")

        @hook("on_chunk", priority=90)
        def chunk(self, context, chunk):
            if not log or log[-1] != "audit.on_chunk":
                log.append("audit.on_chunk")

        @hook("before_toolcall", priority=40)
        def before(self, context, tool_call):
            log.append(f"audit.before_toolcall.{tool_call['function']['name']}")

        @hook("after_toolcall", priority=40)
        def after(self, context, tool_call, result):
            log.append(f"audit.after_toolcall={result}")

        @hook("finalize_connection", priority=90)
        def finalize(self, context):
            log.append("audit.finalize_connection.90")

    class Weather(Skill):
        @tool
        def get_weather(self, city: str) -> str:
            """Weather of a city."""
            log.append("tool.get_weather")
            return "sunny"

        @hook("on_connection", priority=5)
        async def early(self, context):
            log.append("weather.on_connection.5")

        @hook("before_toolcall", priority=40)
        def before(self, context, tool_call):
            log.append("weather.before_toolcall.40")

        @hook("finalize_connection", priority=10)
        async def finalize(self, context):
            log.append("weather.finalize_connection.10")

    hooks = {
        "on_connection": [lambda context: log.append("agent.on_connection.50")],
        "finalize_connection": [{"handler": lambda context: log.append("agent.finalize_connection.1"),
                                 "priority": 1}],
    }
    return {"audit": Audit(), "weather": Weather()}, hooks


@pytest.mark.parametrize("stream", [False, True])
async def test_events_fire_in_order_across_skills_and_agent_hooks(stream):
    log = []
    skills, hooks = recorder(log)
    agent = Agent("a", model="test", skills=skills, hooks=hooks)
    completion = await run_request(agent, USER, stream=stream)
    assert completion["choices"][0]["finish_reason"] == "stop"
    expected = [
        "weather.on_connection.5", "audit.on_connection.20", "agent.on_connection.50",
        "audit.on_message.user",
        "audit.before_toolcall.get_weather", "weather.before_toolcall.40",  # equal priority: skill order
        "tool.get_weather",
        'audit.after_toolcall=sunny',
        "audit.on_message.assistant",
        "agent.finalize_connection.1", "weather.finalize_connection.10", "audit.finalize_connection.90",
    ]
    if stream:  # the role chunk goes out with the model's first chunk; the text after the tools
        expected.insert(expected.index("audit.before_toolcall.get_weather"), "audit.on_chunk")
        expected.insert(expected.index("audit.on_message.assistant"), "audit.on_chunk")
        expected.insert(expected.index("audit.on_message.assistant") + 1, "audit.on_chunk")  # finish
    assert log == expected


async def test_on_chunk_may_drop_chunks_and_later_hooks_do_not_see_them():
    seen = []

    class Filter(Skill):
        @hook("on_chunk", priority=10)
        def drop_secret(self, context, chunk):
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            if delta.get("content") == "secret":
                return DROP

        @hook("on_chunk", priority=20)
        def later(self, context, chunk):
            seen.append(chunk)

    model = ScriptedModel([text_chunks("publicsecret text.", pieces=3)])  # public|secret| text.
    agent = Agent("a", model=model, skills={"filter": Filter()})
    chunks = [c async for c in agent.run_streaming(USER)]
    sent = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert sent == "public text."
    assert all("secret" not in str(c) for c in seen)
    assert len(seen) == len(chunks)


@pytest.mark.parametrize("stream", [False, True])
async def test_before_toolcall_blocks_a_call_with_a_result_the_model_sees(stream):
    ran = []
    after = []

    class Guard(Skill):
        @tool
        def delete_everything(self, confirm: bool) -> str:
            """Deletes everything."""
            ran.append(confirm)
            return "deleted"

        @hook("before_toolcall")
        def block(self, context, tool_call):
            if tool_call["function"]["name"] == "delete_everything":
                raise ToolCallBlocked("blocked by policy: deleting is not allowed")

        @hook("after_toolcall")
        def audit(self, context, tool_call, result):
            after.append(result)

    agent = Agent("a", model="test", skills={"guard": Guard()})
    completion = await run_request(agent, USER, stream=stream)
    text = completion["choices"][0]["message"]["content"]
    assert ran == []
    assert after == ["blocked by policy: deleting is not allowed"]
    assert text == "Tool results: delete_everything returned blocked by policy: deleting is not allowed"


async def test_before_toolcall_rewrites_arguments_and_after_toolcall_rewrites_result():
    class Rewriter(Skill):
        @tool
        def shout(self, text: str) -> str:
            """Upper-cases text."""
            return text.upper()

        @hook("before_toolcall")
        def rewrite(self, context, tool_call):
            return {**tool_call, "function": {**tool_call["function"], "arguments": '{"text": "rewritten"}'}}

        @hook("after_toolcall")
        def annotate(self, context, tool_call, result):
            return f"{result} (checked)"

    agent = Agent("a", model="test", skills={"r": Rewriter()})
    answer = await agent.run(USER)
    assert answer["choices"][0]["message"]["content"] == "Tool results: shout returned REWRITTEN (checked)"


@pytest.mark.parametrize("stream", [False, True])
async def test_guard_fails_closed_before_the_model_and_finalize_runs_once(stream):
    model = ScriptedModel([])  # any model call would fail the test
    finalized = []

    def limit(context):
        raise RateLimitError("too many requests", retry_after=3)

    agent = Agent("a", model=model, hooks={
        "on_connection": limit, "finalize_connection": lambda context: finalized.append(context.request_id),
    })
    with pytest.raises(RateLimitError):
        await run_request(agent, USER, stream=stream)
    assert model.calls == [] and len(finalized) == 1


async def test_failing_observer_never_loses_the_response_or_the_usage():
    billed = []

    class Billing(Skill):
        @hook("after_toolcall", priority=1)
        def broken(self, context, tool_call, result):
            raise RuntimeError("audit store down")

        @hook("finalize_connection", priority=1)
        def broken_finalize(self, context):
            raise RuntimeError("analytics down")

        @hook("finalize_connection", priority=2)
        def bill(self, context):
            billed.append(sum(r.metadata["total_tokens"] for r in context.usage_records if r.kind == "llm"))

        @tool
        def ping(self) -> str:
            """Ping."""
            return "pong"

    agent = Agent("a", model="test", skills={"billing": Billing()})
    answer = await agent.run(USER)
    assert answer["choices"][0]["message"]["content"] == "Tool results: ping returned pong"
    assert billed == [answer["usage"]["total_tokens"]] and billed[0] > 0


# -- scopes ---------------------------------------------------------------------------------------
class Auth(Skill):
    """Sets the caller's scope from a header, as an auth skill would."""

    @hook("on_connection", priority=1)
    def authenticate(self, context):
        context.set("auth_scope", context.headers.get("x-scope", "all"))


class Admin(Skill):
    def __init__(self, log):
        super().__init__()
        self.log = log

    @tool
    def public_status(self) -> str:
        """Status for everyone."""
        return "ok"

    @tool(scope="owner")
    def owner_report(self) -> str:
        """Report for the owner."""
        self.log.append("owner_report ran")
        return "report"

    @tool(scope=["admin"])
    def wipe(self) -> str:
        """Admins only."""
        self.log.append("wipe ran")
        return "wiped"

    @hook("on_connection", priority=2, scope="owner")
    def owner_hook(self, context):
        self.log.append(f"owner hook for {context.get('auth_scope')}")

    @prompt(scope="owner")
    def owner_prompt(self):
        return "You talk to the owner."


@pytest.mark.parametrize(
    ("scope", "tools", "prompted"),
    [
        ("all", ["public_status"], False),
        ("premium", ["public_status"], False),
        ("owner", ["public_status", "owner_report"], True),
        ("admin", ["public_status", "owner_report", "wipe"], True),
    ],
)
async def test_scope_decides_which_tools_hooks_and_prompts_a_caller_gets(scope, tools, prompted):
    log = []
    model = ScriptedModel([text_chunks("fine")])
    agent = Agent("a", model=model, skills={"auth": Auth(), "admin": Admin(log)})
    context = agent.new_context(USER, None, False, headers={"X-Scope": scope})
    await agent.run(USER, context=context)
    messages, offered, _ = model.calls[0]
    assert sorted(t["function"]["name"] for t in offered) == sorted(tools)
    assert ("You talk to the owner." in messages[0]["content"]) is prompted
    assert (log == [f"owner hook for {scope}"]) is prompted


async def test_a_tool_outside_the_callers_scope_does_not_run_when_the_model_names_it():
    log = []
    model = ScriptedModel([tool_call_chunks([("wipe", "{}")]), text_chunks("done")])
    agent = Agent("a", model=model, skills={"auth": Auth(), "admin": Admin(log)})
    await agent.run(USER, context=agent.new_context(USER, None, False, headers={"x-scope": "owner"}))
    tool_message = model.calls[1][0][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith("Error: there is no tool named 'wipe'")
    assert "wipe" not in tool_message["content"].split("available tools:")[1]
    assert log == ["owner hook for owner"]


async def test_agent_level_scope_refuses_other_callers_with_403():
    model = ScriptedModel([text_chunks("hi owner")])
    agent = Agent("private", model=model, skills={"auth": Auth()}, scopes=["owner"])
    with pytest.raises(PermissionDeniedError, match="caller's scope is 'all'") as error:
        await agent.run(USER)
    assert error.value.status_code == 403 and model.calls == []
    answer = await agent.run(USER, context=agent.new_context(USER, None, False, headers={"x-scope": "owner"}))
    assert answer["choices"][0]["message"]["content"] == "hi owner"


# -- skills: initialize, runtime registration, concurrency ----------------------------------------
async def test_initialize_runs_once_under_concurrent_first_requests():
    calls = []

    class Slow(Skill):
        async def initialize(self, agent):
            calls.append(agent.name)
            await asyncio.sleep(0.05)

    agent = Agent("a", model="test", skills={"slow": Slow()})
    await asyncio.gather(*(agent.run(USER) for _ in range(20)))
    assert calls == ["a"]


async def test_runtime_registration_under_concurrent_requests_loses_nothing():
    class Registrar(Skill):
        @hook("on_connection")
        async def add_tool(self, context):
            n = context.get("n")

            def tool_fn() -> str:
                return f"tool {n}"

            tool_fn.__name__ = f"tool_{n}"
            await asyncio.sleep(0)
            self.register_tool(tool_fn)
            self.register_hook("finalize_connection", lambda context: context.set("seen", True))

    registrar = Registrar()
    agent = Agent("a", model=ScriptedModel([text_chunks("x")] * 50), skills={"r": registrar})
    other = Agent("b", model=ScriptedModel([text_chunks("x")]), skills={"r": Registrar()})

    async def one(target, n):
        context = target.new_context(USER, None, False)
        context.set("n", n)
        await target.run(USER, context=context)
        return context

    contexts = await asyncio.gather(*(one(agent, n) for n in range(50)), one(other, 999))
    assert sorted(t.name for t in agent.tools_for_scope("all")) == sorted(f"tool_{n}" for n in range(50))
    assert all(c.get("seen") for c in contexts)
    # registrations do not leak between agents: each skill instance registers on its own agent
    assert [t.name for t in other.tools_for_scope("all")] == ["tool_999"]
    assert registrar.agent is agent
    with pytest.raises(ConfigurationError, match="already part of agent 'a'"):
        Agent("c", model="test", skills={"r": registrar})  # a shared instance would be rebound
    assert registrar.agent is agent


def test_one_skill_instance_cannot_serve_two_agents():
    shared_model, shared_skill = ScriptedModel([]), Skill()
    Agent("first", model=shared_model, skills={"s": shared_skill})
    with pytest.raises(ConfigurationError) as info:
        Agent("second", skills={"s": shared_skill})
    assert info.value.message == (
        "skill 's' (Skill) of agent 'second' is already part of agent 'first': give each agent "
        "its own instance (a skill holds its agent and registers tools and hooks on it)"
    )
    with pytest.raises(ConfigurationError, match="skill 'llm' \\(ScriptedModel\\) of agent 'second' is already part of agent 'first'"):
        Agent("second", model=shared_model)
    failed = Skill()
    with pytest.raises(ConfigurationError):
        Agent("broken", skills={"s": failed}, max_turns=1, hooks={"no_such_event": [lambda: None]})
    Agent("retry", skills={"s": failed})  # a construction that failed leaves the skill free


async def test_concurrent_requests_never_see_each_others_usage():
    class Meter(Skill):
        @tool
        async def work(self, context, units: int) -> str:
            """Do some units of work."""
            await asyncio.sleep(0.01)
            context.track_usage(units, "work", kind="tool")
            return "done"

    agent = Agent("a", model="test", skills={"meter": Meter()})
    seen = {}

    async def one(n):
        context = agent.new_context(USER, None, False)
        await agent.run(USER, context=context)
        seen[n] = [r.credits for r in context.usage_records if r.kind == "tool"]

    await asyncio.gather(*(one(n) for n in range(30)))
    assert all(records == [1] for records in seen.values())  # TestModel sends units=1 each time


def test_decorator_and_agent_option_errors_are_clear():
    from robutler_core import http
    from robutler_core.errors import ConfigurationError

    with pytest.raises(ValueError, match="invalid HTTP method 'fetch'"):
        http("/x", method="fetch")
    with pytest.raises(ValueError, match="must start with '/'"):
        http("x")
    with pytest.raises(ValueError, match="not be /chat/completions"):
        http("/chat/completions", method="post")
    with pytest.raises(ConfigurationError, match=r"hooks\['on_chunk'\] entries must be callables or dicts"):
        Agent("a", model="test", hooks={"on_chunk": [{"handler": lambda context: None, "priority": 1, "when": "always"}]})
    with pytest.raises(ConfigurationError, match="lifecycle events are: on_connection"):
        Agent("a", model="test", hooks={"on_request": [lambda context: None]})
    with pytest.raises(ConfigurationError, match="'on_chunk' passes only: context, chunk"):
        Agent("a", model="test", hooks={"on_chunk": [lambda context, message: None]})
    with pytest.raises(ConfigurationError, match="no inspectable signature"):
        Agent("a", model="test", hooks={"on_chunk": [min]})
    with pytest.raises(ConfigurationError, match="scope= or scopes=, not both"):
        Agent("a", model="test", scope="owner", scopes=["admin"])

    class Twice(Skill):
        @http("/same")
        def one(self):
            return 1

    class Again(Skill):
        @http("/same")
        def two(self):
            return 2

    with pytest.raises(ConfigurationError, match="GET /same is declared by skill Again and skill Twice"):
        Agent("a", model="test", skills={"twice": Twice(), "again": Again()})


async def test_any_callable_with_a_signature_can_be_a_hook():
    import functools

    seen = []

    def record(tag, context, message):
        seen.append((tag, message["role"]))

    class Counter:
        def __call__(self, context):
            seen.append(("object", context.agent.name))

    agent = Agent("a", model="test", hooks={
        "on_message": [functools.partial(record, "partial")], "on_connection": [Counter()],
    })
    await agent.run(USER)
    assert seen == [("object", "a"), ("partial", "user"), ("partial", "assistant")]


class _Pinger(Skill):
    """A tool, so that the tool-call events fire."""

    @tool
    def ping(self) -> str:
        """Ping."""
        return "pong"


def _failing_agent(event, finalized):
    """An agent whose run fires every event (a tool, a handoff, two turns), with a hook that
    raises in ``event``."""
    from robutler_core import handoff

    def boom(context):
        raise PermissionDeniedError(f"{event} says no")

    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    model = ScriptedModel([
        [*tool_call_chunks([("ping", "{}"), ("switch_to_other", {"task": "x"})]), *finish_chunks("tool_calls", usage)],
        [*text_chunks("final answer"), *finish_chunks("stop", usage)],
    ])
    hooks = {"finalize_connection": [lambda context: finalized.append(1)]}
    hooks.setdefault(event, []).insert(0, boom)
    return Agent("a", model=model, skills={"pinger": _Pinger()}, handoffs=[handoff("test/other")],
                 hooks=hooks), model


@pytest.mark.parametrize("event", ["on_connection", "on_message", "on_chunk", "before_toolcall", "before_handoff"])
async def test_every_guarding_event_fails_closed(event):
    finalized = []
    agent, _ = _failing_agent(event, finalized)
    with pytest.raises(PermissionDeniedError, match=f"{event} says no"):
        [c async for c in agent.run_streaming(USER)]
    assert finalized == [1]


@pytest.mark.parametrize("event", ["after_toolcall", "after_handoff", "finalize_connection"])
@pytest.mark.parametrize("stream", [False, True])
async def test_every_observing_event_keeps_the_response(event, stream, caplog):
    finalized = []
    agent, model = _failing_agent(event, finalized)
    context = agent.new_context(USER, None, stream)
    completion = await run_request(agent, USER, stream=stream, context=context)
    text = completion["choices"][0]["message"]["content"]
    assert text == "final answer"
    assert len(context.usage_records) == 3  # two turns of the agent's model, one of the handoff's
    assert finalized == [1]
    assert f"{event} hook" in caplog.text and "says no" in caplog.text


async def test_a_usage_record_survives_a_cancellation_while_it_is_priced():
    priced = asyncio.Event()

    class SlowPricing(ScriptedModel):
        async def usage_cost(self, usage):
            priced.set()
            await asyncio.sleep(30)

    usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    agent = Agent("a", model=SlowPricing([[*text_chunks("hi"), *finish_chunks("stop", usage)]]))
    context = agent.new_context(USER, None, False)
    task = asyncio.create_task(agent.run(USER, context=context))
    await priced.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = context.usage_records
    assert record.metadata["total_tokens"] == 9 and record.metadata["cost_usd"] is None
