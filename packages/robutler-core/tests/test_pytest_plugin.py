"""The fixtures skill authors get from the pytest11 entry point, used as they would use them."""

import types

import pytest

from robutler_core import Skill, hookimpl, tool
from robutler_core.errors import ConfigurationError


class Greeter(Skill):
    @tool
    def greet(self, name: str) -> str:
        """Greet someone."""
        return f"hello {name}"


plugin_module = types.ModuleType("robutler_skill_greeter")


@hookimpl
def _register_skills(register):
    register(Greeter, name="greeter")


plugin_module.register_skills = _register_skills


@pytest.mark.parametrize("stream", [False, True])
async def test_register_a_plugin_build_an_agent_and_run_it(register_plugin, make_agent, run_agent, stream):
    registry = register_plugin(plugin_module)
    assert registry.get("greeter").distribution == "robutler_skill_greeter"
    agent = make_agent("greeter")
    completion = await run_agent(agent, "hi", stream=stream)
    assert completion["choices"][0]["message"]["content"] == "Tool results: greet returned hello a"
    assert ("chunks" in completion) is stream


async def test_skill_classes_and_instances_and_dependencies(register_plugin, make_agent, run_agent):
    class NeedsGreeter(Skill):
        def __init__(self, config=None):
            super().__init__(config, dependencies=["greeter"])

    with pytest.raises(ConfigurationError, match="needsgreeter -> greeter"):
        make_agent(NeedsGreeter)
    register_plugin(Greeter, name="greeter")
    agent = make_agent(NeedsGreeter())
    assert sorted(agent.skills) == ["greeter", "llm", "needsgreeter"]


def test_registrations_do_not_leak_between_tests(robutler_registry):
    assert "greeter" not in robutler_registry
    assert "test" in robutler_registry


def test_register_plugin_rejects_what_is_not_a_plugin(register_plugin):
    with pytest.raises(TypeError, match="neither a Skill class nor a plugin"):
        register_plugin(object())
