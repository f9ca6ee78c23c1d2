"""Robutler LLM skill for Anthropic's Claude models (``anthropic/``), on the official SDK."""

from robutler_core import hookimpl

from .errors import map_anthropic_error
from .skill import DEFAULT_MAX_TOKENS, AnthropicSkill

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicSkill", "map_anthropic_error"]


@hookimpl
def register_skills(register):  # type: ignore[no-untyped-def]
    register(AnthropicSkill, name="anthropic")
