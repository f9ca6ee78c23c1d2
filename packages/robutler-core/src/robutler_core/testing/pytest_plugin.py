"""pytest fixtures for skill authors, loaded automatically (the ``pytest11`` entry point of
robutler-core) wherever robutler-core is installed. Nothing here touches the network.

Fixtures:

``robutler_registry``
    A fresh :class:`~robutler_core.SkillRegistry` of the installed plugins (entry points of
    the ``robutler`` group, honouring ``ROBUTLER_LOAD_PLUGINS``), for this test only.
``register_plugin``
    ``register_plugin(plugin_or_skill_class, name=None)``: add a plugin module (one with a
    ``register_skills`` hookimpl) or a Skill class to ``robutler_registry`` for this test,
    as if its distribution were installed. Returns the registry.
``make_agent``
    ``make_agent(*skills, model="test", name="test-agent", **agent_kwargs)``: an
    :class:`~robutler_core.Agent` on the offline :class:`TestModel` (or the given model),
    resolving names through ``robutler_registry``. Each skill is an instance, a Skill class
    (created with default config) or a registered name; a ``skills={...}`` mapping works too.
``run_agent``
    ``await run_agent(agent, "hello" or messages, stream=False, tools=None, **params)``:
    one request; returns the ``chat.completion`` (when ``stream=True``, assembled from the
    streamed chunks, which are kept on ``completion["chunks"]``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ..agent import Agent
from ..plugins import SkillRegistry, get_plugin_manager
from ..skill import Skill
from .runner import run_request


@pytest.fixture
def robutler_registry() -> SkillRegistry:
    return SkillRegistry.from_plugin_manager(get_plugin_manager())


@pytest.fixture
def register_plugin(robutler_registry: SkillRegistry) -> Callable[..., SkillRegistry]:
    def register(plugin: Any, name: str | None = None) -> SkillRegistry:
        if isinstance(plugin, type) and issubclass(plugin, Skill):
            robutler_registry.add(plugin, name=name, distribution="(test)")
            return robutler_registry
        if not hasattr(plugin, "register_skills"):
            raise TypeError(f"{plugin!r} is neither a Skill class nor a plugin with register_skills")
        plugin.register_skills(
            register=lambda skill_class, name=None: robutler_registry.add(
                skill_class, name=name, distribution=getattr(plugin, "__name__", "(test)")
            )
        )
        return robutler_registry

    return register


@pytest.fixture
def make_agent(robutler_registry: SkillRegistry) -> Callable[..., Agent]:
    def make(*skills: Any, model: Any = "test", name: str = "test-agent", **kwargs: Any) -> Agent:
        named = dict(kwargs.pop("skills", None) or {})
        for skill in skills:
            if isinstance(skill, str):
                named[skill] = robutler_registry.create(skill)
            elif isinstance(skill, type) and issubclass(skill, Skill):
                named[skill.__name__.lower()] = skill()
            elif isinstance(skill, Skill):
                named[type(skill).__name__.lower()] = skill
            else:
                raise TypeError(f"make_agent: {skill!r} is not a Skill, a Skill class or a skill name")
        return Agent(name, model=model, skills=named, registry=robutler_registry, **kwargs)

    return make


@pytest.fixture
def run_agent() -> Callable[..., Awaitable[dict[str, Any]]]:
    return run_request
