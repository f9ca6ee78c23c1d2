"""Robutler core: agents built from skills, served in OpenAI's chat-completions format.

Importing this package imports only pluggy, pydantic and the standard library.
"""

from .agent import Agent, BaseAgent
from .context import Context, UsageRecord, get_context
from .decorators import hook, prompt, tool
from .hookspecs import LIFECYCLE_EVENTS, hookimpl, hookspec
from .plugins import SkillRegistry, get_plugin_manager, installed_skills
from .skill import LLMSkill, Skill
from .tools import Tool

__all__ = [
    "LIFECYCLE_EVENTS",
    "Agent",
    "BaseAgent",
    "Context",
    "LLMSkill",
    "Skill",
    "SkillRegistry",
    "Tool",
    "UsageRecord",
    "get_context",
    "get_plugin_manager",
    "hook",
    "hookimpl",
    "hookspec",
    "installed_skills",
    "prompt",
    "tool",
]
