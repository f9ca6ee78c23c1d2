"""Robutler skill for LiteLLM: any provider LiteLLM supports behind one LLM skill."""

from robutler_core import hookimpl

from .errors import map_litellm_error
from .skill import LiteLLMSkill

__all__ = ["LiteLLMSkill", "map_litellm_error"]


@hookimpl
def register_skills(register):  # type: ignore[no-untyped-def]
    register(LiteLLMSkill, name="litellm")
