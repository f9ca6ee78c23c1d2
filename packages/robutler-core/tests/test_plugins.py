import os
import subprocess
import sys
import json

import pytest

from robutler_core import Agent, LLMSkill, Skill
from robutler_core.errors import ConfigurationError
from robutler_core.plugins import SkillRegistry, get_plugin_manager
from robutler_core.testing import TestModel


class Native(LLMSkill):
    model_prefixes = ("openai",)

    async def chat_completion(self, messages, tools=None, **params):
        raise AssertionError

    async def chat_completion_stream(self, messages, tools=None, **params):
        yield {}


class Fallback(Native):
    model_prefixes = ("router",)
    fallback_prefixes = ("openai", "anthropic")

    @classmethod
    def model_config(cls, prefix, model):
        return {"model": model if prefix == "router" else f"{prefix}/{model}"}


def registry(*classes):
    reg = SkillRegistry()
    for cls in classes:
        reg.add(cls, name=cls.__name__.lower(), distribution=f"dist-{cls.__name__.lower()}")
    return reg


def test_builtin_test_model_is_registered_like_a_plugin():
    reg = SkillRegistry.from_plugin_manager(get_plugin_manager(load_entry_points=False))
    assert reg.get("test").skill_class is TestModel
    assert reg.get("test").distribution == "robutler-core"


def test_two_distributions_claiming_one_name_fail_naming_both():
    class A(Skill):
        pass

    class B(Skill):
        pass

    reg = SkillRegistry()
    reg.add(A, name="weather", distribution="robutler-skill-a")
    with pytest.raises(ConfigurationError, match="'weather' is registered by both robutler-skill-a .* and robutler-skill-b"):
        reg.add(B, name="weather", distribution="robutler-skill-b")


def test_registering_a_non_skill_fails():
    with pytest.raises(ConfigurationError, match="not a Skill subclass"):
        SkillRegistry().add(dict, name="x", distribution="bad-dist")


def test_native_prefix_wins_over_fallback_and_fallback_serves_otherwise():
    both = registry(Fallback, Native)
    assert type(Agent("a", model="openai/gpt-4o", registry=both).llm) is Native
    only_fallback = registry(Fallback)
    agent = Agent("a", model="openai/gpt-4o", registry=only_fallback)
    assert type(agent.llm) is Fallback and agent.llm.model == "openai/gpt-4o"
    assert Agent("a", model="router/x/y", registry=only_fallback).llm.model == "x/y"


def test_unknown_prefix_lists_installed_providers():
    with pytest.raises(ConfigurationError, match=r"prefix 'mistral/'; installed providers: anthropic, openai, router"):
        Agent("a", model="mistral/large", registry=registry(Fallback))
    with pytest.raises(ConfigurationError, match="no provider prefix"):
        Agent("a", model="gpt-4o", registry=registry(Fallback))


def test_configured_llm_skill_is_reused_with_the_model():
    reg = registry(Fallback)
    configured = Fallback({"api_base": "http://x"})
    agent = Agent("a", model="anthropic/claude", skills={"router": configured}, registry=reg)
    assert agent.llm.config == {"api_base": "http://x", "model": "anthropic/claude"}
    assert agent.skills["router"] is agent.llm


def test_dependencies_are_added_and_cycles_and_missing_ones_named():
    class Auth(Skill):
        pass

    class Payments(Skill):
        def __init__(self, config=None):
            super().__init__(config, dependencies=["auth"])

    class Loop(Skill):
        def __init__(self, config=None):
            super().__init__(config, dependencies=["loop2"])

    class Loop2(Skill):
        def __init__(self, config=None):
            super().__init__(config, dependencies=["loop"])

    reg = SkillRegistry()
    for cls, name in ((Auth, "auth"), (Payments, "payments"), (Loop, "loop"), (Loop2, "loop2"), (TestModel, "test")):
        reg.add(cls, name=name)
    agent = Agent("a", model="test", skills={"payments": Payments()}, registry=reg)
    assert isinstance(agent.skills["auth"], Auth)
    with pytest.raises(ConfigurationError, match="circular skill dependency: loop -> loop2 -> loop"):
        Agent("a", model="test", skills={"loop": Loop()}, registry=reg)
    with pytest.raises(ConfigurationError, match="not installed: payments -> auth"):
        Agent("a", model="test", skills={"payments": Payments()}, registry=registry(TestModel))


def _installed_in_subprocess(env_value):
    code = "import json; from robutler_core import installed_skills; print(json.dumps(sorted(i.name for i in installed_skills())))"
    env = {k: v for k, v in os.environ.items() if k != "ROBUTLER_LOAD_PLUGINS"}
    if env_value is not None:
        env["ROBUTLER_LOAD_PLUGINS"] = env_value
    return json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)


def test_robutler_load_plugins_limits_entry_points():
    everything = _installed_in_subprocess(None)
    assert {"test", "weather"} <= set(everything)
    assert _installed_in_subprocess("") == ["test"]
    assert _installed_in_subprocess("Robutler_Skill_Weather") == ["test", "weather"]
