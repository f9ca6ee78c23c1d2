"""Tools with an explicit JSON schema, removing tools at run time, one tool call outside a chat
completion (``Agent.call_tool``) and what skills report in the agent's info (``Skill.status``):
the public API a skill such as an MCP client uses."""

import pytest

from robutler_core import Agent, Skill, Tool, ToolCallResult, hook, tool
from robutler_core.errors import AuthenticationError, ConfigurationError
from robutler_core.tools import ToolArgumentsError

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}, "days": {"type": "integer"}},
    "required": ["city"],
    "additionalProperties": False,
}


def require_city(arguments):
    if "city" not in arguments:
        raise ValueError("'city' is a required property")


async def test_an_explicit_schema_goes_on_the_wire_unchanged_and_the_function_gets_the_arguments_dict():
    seen = []

    async def forecast(arguments):
        seen.append(arguments)
        return f"sunny in {arguments['city']}"

    built = Tool(forecast, name="weather.forecast", description="Forecast.", parameters=SCHEMA, validate=require_city)
    assert built.definition() == {
        "type": "function",
        "function": {"name": "weather.forecast", "description": "Forecast.", "parameters": SCHEMA},
    }
    assert await built.invoke('{"city": "Oslo", "days": 2, "x-extra": [1]}') == "sunny in Oslo"
    assert seen == [{"city": "Oslo", "days": 2, "x-extra": [1]}]  # names that are not identifiers pass


async def test_the_validator_refuses_before_the_call_and_its_message_reaches_the_model():
    calls = []
    built = Tool(lambda arguments: calls.append(arguments), name="t", parameters=SCHEMA, validate=require_city)
    with pytest.raises(ToolArgumentsError, match="invalid arguments for tool 't': 'city' is a required property"):
        await built.invoke({"days": 1})
    with pytest.raises(ToolArgumentsError, match="must be a JSON object, got list"):
        await built.invoke("[1]")
    assert calls == []


async def test_a_sync_function_with_context_runs_in_a_thread_and_gets_the_context():
    import threading

    main = threading.get_ident()
    seen = []

    def handler(arguments, context=None):
        seen.append((arguments, context, threading.get_ident() != main))
        return {"ok": True}

    built = Tool(handler, name="t", parameters={"type": "object"})
    assert await built.invoke(None, context="CTX") == {"ok": True}
    assert seen == [({}, "CTX", True)]


def test_bad_explicit_tool_definitions_are_refused():
    with pytest.raises(TypeError, match="parameters must be a JSON schema dict, got str"):
        Tool(lambda a: a, name="t", parameters="object")
    with pytest.raises(TypeError, match="validate= needs an explicit parameters= schema"):
        Tool(lambda city: city, name="t", validate=require_city)


class Dynamic(Skill):
    @tool
    def fixed(self) -> str:
        """Always there."""
        return "fixed"


async def test_the_model_calls_an_explicit_schema_tool_and_removed_tools_are_gone_for_later_requests():
    skill = Dynamic()
    agent = Agent("a", model="test", skills={"dyn": skill})
    skill.register_tool(Tool(lambda arguments: f"forecast for {arguments['city']}", name="forecast",
                             parameters=SCHEMA, scope="all"))
    completion = await agent.run([{"role": "user", "content": "weather?"}])
    assert "forecast returned forecast for Paris" in completion["choices"][0]["message"]["content"]

    skill.unregister_tool("forecast")
    assert [t.name for t in agent.tools_for_scope("admin")] == ["fixed"]
    completion = await agent.run([{"role": "user", "content": "weather?"}])
    assert "forecast" not in completion["choices"][0]["message"]["content"]
    # a name can be registered again once removed
    skill.register_tool(Tool(lambda arguments: "again", name="forecast", parameters={"type": "object"}))
    assert {t.name for t in agent.tools_for_scope("all")} == {"fixed", "forecast"}


def test_unregistering_an_unknown_tool_or_another_sources_tool_is_a_configuration_error():
    def mine() -> str:
        return "agent's"

    skill = Dynamic()
    agent = Agent("a", model="test", skills={"dyn": skill}, tools=[mine])
    with pytest.raises(ConfigurationError, match="agent 'a' has no tool named 'nope'"):
        skill.unregister_tool("nope")
    with pytest.raises(ConfigurationError, match="tool 'mine' belongs to agent 'a', not skill Dynamic"):
        skill.unregister_tool("mine")
    assert agent.unregister_tool("mine").name == "mine"
    with pytest.raises(RuntimeError, match="not part of an agent"):
        Dynamic().unregister_tool("fixed")


class Guarded(Skill):
    """Bearer 'secret' makes the caller owner; records the lifecycle."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    @hook("on_connection")
    def authenticate(self, context):
        self.log.append("on_connection")
        token = context.headers.get("authorization")
        if token == "Bearer wrong":
            raise AuthenticationError("bad token")
        if token == "Bearer secret":
            context.auth_scope = "owner"

    @hook("before_toolcall")
    def before(self, context, tool_call):
        self.log.append(f"before {tool_call['function']['name']} {tool_call['function']['arguments']}")
        return tool_call

    @hook("after_toolcall")
    def after(self, context, tool_call, result):
        self.log.append(f"after {result}")
        return result

    @hook("finalize_connection")
    def finalize(self, context):
        self.log.append(f"finalize {[r.reason for r in context.usage_records]}")

    @tool
    def add(self, a: int, b: int, context=None) -> int:
        """Add two numbers."""
        context.track_usage(1, "add")
        return a + b

    @tool(scope="owner")
    def secret(self) -> str:
        """The owner's secret."""
        return "42"

    @tool
    def broken(self) -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")


async def test_call_tool_runs_the_request_lifecycle_once_around_one_tool():
    log = []
    agent = Agent("a", model="test", skills={"g": Guarded(log)})
    result = await agent.call_tool("add", {"a": 2, "b": 3}, agent.new_context([], None, False))
    assert result == ToolCallResult("5", False)
    assert log == ["on_connection", 'before add {"a": 2, "b": 3}', "after 5", "finalize ['add']"]


async def test_call_tool_enforces_the_callers_scope_and_reports_failures_as_results():
    log = []
    agent = Agent("a", model="test", skills={"g": Guarded(log)})
    anonymous = await agent.call_tool("secret", None, agent.new_context([], None, False))
    assert anonymous.is_error and anonymous.content.startswith("Error: there is no tool named 'secret'")
    owner = agent.new_context([], None, False, headers={"Authorization": "Bearer secret"})
    assert await agent.call_tool("secret", "{}", owner) == ToolCallResult("42", False)

    failed = await agent.call_tool("broken", {}, agent.new_context([], None, False))
    assert failed == ToolCallResult("Error: tool 'broken' failed: RuntimeError: disk on fire", True)
    bad = await agent.call_tool("add", {"a": "x"}, agent.new_context([], None, False))
    assert bad.is_error and "invalid arguments for tool 'add'" in bad.content

    log.clear()
    with pytest.raises(AuthenticationError):
        await agent.call_tool("add", {"a": 1, "b": 1}, agent.new_context([], None, False, headers={"authorization": "Bearer wrong"}))
    assert log == ["on_connection", "finalize []"]  # finalize_connection runs once, even then


class Reporting(Skill):
    def __init__(self, fail=False):
        super().__init__()
        self.fail = fail

    def status(self, auth_scope):
        if self.fail:
            raise RuntimeError("status broke")
        return {"servers": {"time": "connected"}, "detail": auth_scope == "owner"}


def test_skills_report_their_status_in_the_agents_info():
    agent = Agent("a", model="test", skills={"rep": Reporting(), "plain": Dynamic()})
    assert agent.info("all")["status"] == {"rep": {"servers": {"time": "connected"}, "detail": False}}
    assert agent.info("owner")["status"]["rep"]["detail"] is True
    assert "status" not in Agent("b", model="test", skills={"plain": Dynamic()}).info()


def test_a_failing_status_is_reported_not_raised(caplog):
    agent = Agent("a", model="test", skills={"rep": Reporting(fail=True)})
    assert agent.info()["status"] == {"rep": {"error": "RuntimeError: status broke"}}
    assert "status of skill 'rep' failed" in caplog.text
