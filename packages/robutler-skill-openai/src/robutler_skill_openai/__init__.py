"""Robutler LLM skills on the official openai SDK: OpenAI (``openai/``), xAI (``xai/``) and
any OpenAI-compatible server (``base_url``)."""

from robutler_core import hookimpl

from .errors import map_openai_error
from .skill import OpenAISkill, XAISkill

__all__ = ["OpenAISkill", "XAISkill", "map_openai_error"]


@hookimpl
def register_skills(register):  # type: ignore[no-untyped-def]
    register(OpenAISkill, name="openai")
    register(XAISkill, name="xai")
