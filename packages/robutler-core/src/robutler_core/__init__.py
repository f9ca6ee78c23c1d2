"""Robutler core: agents built from skills, served in OpenAI's chat-completions format.

Importing this package imports only pluggy and the standard library (pydantic and
docstring-parser follow when a tool is built or a skill's config is validated), so that a
process starts fast.
"""

from typing import Any

from .agent import Agent, BaseAgent, connect_agents
from .context import Context, UsageRecord, get_context
from .decorators import handoff, hook, http, prompt, tool
from .handoffs import Handoff, HandoffResult, LLMHandoff, LocalAgentHandoff
from .hookspecs import DROP, LIFECYCLE_EVENTS, ToolCallBlocked, hookimpl, hookspec
from .plugins import SkillRegistry, get_plugin_manager, installed_skills
from .skill import STANDARD_PARAMS, LLMSkill, SDKLLMSkill, Skill
from .tools import Tool, ToolCallResult

__all__ = [
    "DROP",
    "LIFECYCLE_EVENTS",
    "STANDARD_PARAMS",
    "Agent",
    "BaseAgent",
    "Context",
    "Handoff",
    "HandoffResult",
    "LLMConfig",
    "LLMHandoff",
    "LLMSkill",
    "LocalAgentHandoff",
    "SDKLLMSkill",
    "Skill",
    "SkillRegistry",
    "Tool",
    "ToolCallBlocked",
    "ToolCallResult",
    "UsageRecord",
    "connect_agents",
    "get_context",
    "get_plugin_manager",
    "handoff",
    "hook",
    "http",
    "hookimpl",
    "hookspec",
    "installed_skills",
    "prompt",
    "tool",
]


def __getattr__(name: str) -> Any:
    if name == "LLMConfig":  # a pydantic model: defined at first use (see robutler_core.llm_config)
        from .llm_config import LLMConfig

        return LLMConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
