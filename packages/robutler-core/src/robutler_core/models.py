"""Model resolution: ``"provider/model"`` to an LLM skill instance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigurationError
from .skill import LLMSkill, Skill

if TYPE_CHECKING:
    from .plugins import SkillRegistry


def split_model(model: str) -> tuple[str, str]:
    """``"litellm/openai/gpt-4o"`` -> ``("litellm", "openai/gpt-4o")``; ``"test"`` -> ``("test", "")``.

    Raises ConfigurationError for any other name without a provider prefix.
    """
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(f"model must be a 'provider/model' string, got {model!r}")
    prefix, _, name = model.partition("/")
    if not name and prefix != "test":
        raise ConfigurationError(
            f"model {model!r} has no provider prefix: write it as 'provider/model' "
            "(e.g. 'openai/gpt-4o-mini', 'litellm/openai/gpt-4o') or 'test'"
        )
    return prefix, name


def resolve_model(
    model: str | LLMSkill,
    registry: SkillRegistry,
    configured: dict[str, Skill] | None = None,
) -> LLMSkill:
    """The LLM skill instance that serves ``model``.

    An LLMSkill instance is returned as it is. For a string, an instance in ``configured``
    (an agent's skills) whose class serves the prefix is reused with its config and the model
    set; otherwise the registry's skill for the prefix is created.

    Raises ConfigurationError when no installed LLM skill serves the prefix (the message lists
    the prefixes that are served).
    """
    if isinstance(model, LLMSkill):
        return model
    prefix, name = split_model(model)
    for skill in (configured or {}).values():
        if isinstance(skill, LLMSkill) and prefix in (
            *type(skill).model_prefixes,
            *type(skill).fallback_prefixes,
        ):
            return type(skill)({**skill.config, **type(skill).model_config(prefix, name)})
    skill_class = registry.llm_for_prefix(prefix).skill_class
    return skill_class(skill_class.model_config(prefix, name))  # type: ignore[attr-defined,arg-type]
