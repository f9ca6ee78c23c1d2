"""Agent construction reads a skill class's hooks, tools and prompts once per class (cached):
the result must be what pluggy's own scan gives, for every kind of hookimpl, every time."""

import threading

import pluggy
import pytest

from robutler_core import Agent, Skill, hook, hookimpl, prompt, tool
from robutler_core.errors import ConfigurationError
from robutler_core.hookspecs import LifecycleSpecs
from robutler_core.lifecycle import LifecyclePluginManager


def log_hook(context):
    context.set("seen", [*(context.get("seen") or []), "instance"])


class Base(Skill):
    @hook("on_connection", priority=20)
    async def first(self, context):
        context.set("seen", [*(context.get("seen") or []), "base.first"])

    @hookimpl
    def on_message(self, context, message):
        return None

    @hook("finalize_connection")
    def done(self, context):
        return None


class Child(Base):
    @hook("on_connection", priority=10)
    def first(self, context):  # overrides, keeps the base's place in the definition order
        context.set("seen", [*(context.get("seen") or []), "child.first"])

    @hookimpl(specname="on_chunk")
    @staticmethod
    def static_chunk(context, chunk):
        return None

    @hookimpl(specname="on_chunk")
    @classmethod
    def class_chunk(cls, context, chunk):
        return None

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @prompt(priority=5)
    def hint(self):
        return "Be brief."


class WithInstanceHook(Child):
    """An instance attribute holding a hookimpl: only pluggy's own scan finds it."""

    def __init__(self, config=None):
        super().__init__(config)
        self.extra = hookimpl(specname="on_connection")(log_hook)


class InstanceOnly(Skill):
    def __init__(self, config=None):
        super().__init__(config)
        self.extra = hookimpl(specname="on_connection")(log_hook)


class Shadowed(Child):
    """An instance attribute shadowing a class hook: pluggy's scan does not see the method."""

    def __init__(self, config=None):
        super().__init__(config)
        self.done = None


def described(manager, plugin_name):
    """Every hookimpl of ``plugin_name``, as comparable tuples."""
    found = []
    for event in sorted(name for name in vars(manager.hook) if not name.startswith("_")):
        for impl in getattr(manager.hook, event).get_hookimpls():
            if impl.plugin_name == plugin_name:
                function = getattr(impl.function, "__func__", impl.function)
                found.append((event, function, impl.argnames, impl.kwargnames, dict(impl.opts)))
    return sorted(found, key=repr)


def pluggys_own(skill):
    manager = pluggy.PluginManager("robutler")
    manager.add_hookspecs(LifecycleSpecs)
    manager.register(skill, name="s")
    return described(manager, "s")


@pytest.mark.parametrize("skill_class", [Base, Child, WithInstanceHook, Shadowed])
def test_registration_finds_what_pluggys_scan_finds_first_and_later_times(skill_class):
    expected = pluggys_own(skill_class())
    assert expected  # the classes declare hooks
    for _ in range(3):  # the first registration fills the class cache; later ones read it
        manager = LifecyclePluginManager()
        manager.add(skill_class(), name="s")
        assert described(manager, "s") == expected


def test_instance_attributes_decide_as_in_pluggy():
    events = {entry[0] for entry in pluggys_own(WithInstanceHook())}
    assert "on_connection" in events
    assert sum(1 for e in described_for(WithInstanceHook) if e[0] == "on_connection") == 2
    assert "finalize_connection" not in {e[0] for e in described_for(Shadowed)}
    assert "finalize_connection" in {e[0] for e in described_for(Child)}


def described_for(skill_class):
    manager = LifecyclePluginManager()
    manager.add(skill_class(), name="s")
    return described(manager, "s")


async def test_hooks_tools_and_prompts_of_a_cached_class_work_in_every_agent():
    for _ in range(2):
        agent = Agent("a", "Base.", model="test", skills={"s": Child(), "i": InstanceOnly()})
        context = agent.new_context([{"role": "user", "content": "hi"}], None, False)
        completion = await agent.run([], context=context)
        assert "add returned 2" in completion["choices"][0]["message"]["content"]
        # priority 10 (the child's override of the base's 20) first, then the instance's (50)
        assert context.get("seen") == ["child.first", "instance"]
        assert await agent.system_prompt(context) == "Base.\n\nBe brief."


@pytest.mark.parametrize("repeat", [1, 2])
def test_a_misspelt_event_or_argument_fails_every_time_not_only_the_first(repeat):
    class Misspelt(Skill):
        @hook("on_chunck")
        def f(self, context, chunk):
            return None

    class BadArgument(Skill):
        @hook("on_chunk")
        def f(self, context, chunk, user):
            return None

    for _ in range(repeat):
        with pytest.raises(ConfigurationError, match="on_chunck"):
            Agent("a", model="test", skills={"m": Misspelt()})
        with pytest.raises(ConfigurationError, match="user"):
            Agent("a", model="test", skills={"b": BadArgument()})


async def test_runtime_hooks_stay_with_their_agent_and_concurrent_registrations_all_land():
    one = Agent("one", model="test", skills={"s": Child()})
    two = Agent("two", model="test", skills={"s": Child()})
    calls = []

    def register(n):
        one.skills["s"].register_hook("finalize_connection", lambda context: calls.append(n))

    threads = [threading.Thread(target=register, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    await one.run([{"role": "user", "content": "hi"}])
    assert sorted(calls) == list(range(16))
    calls.clear()
    await two.run([{"role": "user", "content": "hi"}])
    assert calls == []
    assert not LifecyclePluginManager().hook.finalize_connection.get_hookimpls()


def test_one_skill_instance_is_registered_once_per_manager():
    manager = LifecyclePluginManager()
    skill = Child()
    manager.add(skill, name="s")
    with pytest.raises(ValueError, match="already registered"):
        manager.add(skill, name="t")
    with pytest.raises(ValueError, match="already registered"):
        manager.add(Child(), name="s")
    assert len(manager.hook.on_connection.get_hookimpls()) == 1


def test_the_managers_share_hookspecs_but_not_hookimpls():
    one, two = LifecyclePluginManager(), LifecyclePluginManager()
    assert one.hook.on_chunk.spec is two.hook.on_chunk.spec
    assert one.hook.on_chunk is not two.hook.on_chunk
    one.add(Child(), name="s")
    assert len(one.hook.on_chunk.get_hookimpls()) == 2
    assert two.hook.on_chunk.get_hookimpls() == []
