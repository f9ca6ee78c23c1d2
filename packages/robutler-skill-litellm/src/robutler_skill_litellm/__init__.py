"""Robutler skill for LiteLLM: any provider LiteLLM supports behind one LLM skill."""

from robutler_core import hookimpl

from .errors import map_litellm_error
from .pricing import model_cost as litellm_model_cost
from .skill import LiteLLMSkill

__all__ = ["LiteLLMSkill", "litellm_model_cost", "map_litellm_error"]


@hookimpl
def register_skills(register):  # type: ignore[no-untyped-def]
    register(LiteLLMSkill, name="litellm")


@hookimpl
def model_cost(model, usage):  # type: ignore[no-untyped-def]
    """Price any LLM skill's model calls from LiteLLM's price map."""
    return litellm_model_cost(model, usage)
