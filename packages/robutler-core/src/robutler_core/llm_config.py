"""The options every LLM provider skill takes (:class:`LLMConfig`).

Apart from :mod:`robutler_core.skill` so that importing robutler_core defines no pydantic
model (pydantic scans the installed distributions for its plugins at the first one); both
``robutler_core.LLMConfig`` and ``robutler_core.skill.LLMConfig`` give this class.
"""

from __future__ import annotations

import pydantic


class LLMConfig(pydantic.BaseModel):
    """The options every LLM provider skill takes; providers' :attr:`Skill.config_model`
    extend it. Unknown options are refused (a misspelt option is an error, not ignored)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    model: str | None = None
    """The provider's model name (the part after ``provider/``)."""
    fallbacks: list[str] | None = None
    """Models (``"provider/model"``) the agent tries, in order, after a retryable failure."""
    temperature: float | None = pydantic.Field(None, ge=0)
    """Default sampling temperature of every request (a request's own value wins)."""
    max_tokens: int | None = pydantic.Field(None, gt=0)
    """Default output token limit of every request (a request's own value wins)."""
    timeout: float | None = pydantic.Field(None, gt=0)
    """Seconds per HTTP request to the provider."""
