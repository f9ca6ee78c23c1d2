"""Robutler core: agents built from skills, served in OpenAI's chat-completions format.

Importing this package imports only pluggy, pydantic and the standard library.
"""

from .agent import Agent, BaseAgent, connect_agents
from .context import Context, UsageRecord, get_context
from .decorators import handoff, hook, http, prompt, tool
from .handoffs import Handoff, HandoffResult, LLMHandoff, LocalAgentHandoff
from .hookspecs import DROP, LIFECYCLE_EVENTS, ToolCallBlocked, hookimpl, hookspec
from .plugins import SkillRegistry, get_plugin_manager, installed_skills
from .skill import STANDARD_PARAMS, LLMConfig, LLMSkill, SDKLLMSkill, Skill
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
