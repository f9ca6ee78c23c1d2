"""Embeddings through the installed LLM skills: ``"provider/model"`` resolves as chat models do.

``openai/text-embedding-3-small`` is served by robutler-skill-openai (or LiteLLM when only it is
installed), ``litellm/<provider>/<model>`` by LiteLLM, ``local/all-MiniLM-L6-v2`` by this
package's own ``local`` skill (:mod:`robutler_skill_memory.local`, CPU, sentence-transformers).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .errors import invalid_response
from .models import resolve_model
from .plugins import installed_skills

if TYPE_CHECKING:
    from robutler_core import Agent, LLMSkill
    from robutler_core.plugins import SkillRegistry

logger = logging.getLogger("robutler_core.embeddings")


class Embedder:
    """Embeds texts with ``"provider/model"`` models: one LLM skill instance per model, created
    through :func:`robutler_core.models.resolve_model` and initialised once, reused after.

    Args:
        registry: where providers are looked up (default: the process's installed skills).
        agent: when given, its registry and its configured LLM skills are used (an agent's
            ``openai`` skill with its own ``api_key``/``base_url`` serves ``openai/...``
            embeddings too), and the created skills are initialised with it.
    """

    def __init__(self, registry: SkillRegistry | None = None, agent: Agent | None = None) -> None:
        self.agent = agent
        self.registry = registry or (getattr(agent, "registry", None) if agent else None)
        self._skills: dict[str, LLMSkill] = {}
        self._ready: dict[str, asyncio.Task[None]] = {}

    async def skill(self, model: str) -> LLMSkill:
        """The initialised LLM skill serving ``model`` (created on first use).

        Raises ConfigurationError when no installed provider serves the prefix.
        """
        skill = self._skills.get(model)
        if skill is None:
            configured = dict(getattr(self.agent, "skills", None) or {}) if self.agent else None
            skill = resolve_model(model, self.registry or installed_skills(), configured=configured)
            self._skills[model] = skill
        ready = self._ready.get(model)
        if ready is None:  # one initialisation, however many callers wait for it
            ready = self._ready[model] = asyncio.ensure_future(skill.initialize(self.agent))
        try:
            await asyncio.shield(ready)
        except BaseException:
            if ready.done():  # a failed initialisation is retried by the next caller
                self._ready.pop(model, None)
                self._skills.pop(model, None)
            raise
        return skill

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """One vector (list of floats) per text, in order, from ``model`` (``"provider/model"``).

        A provider's vectors that are lists are returned as they are (not copied: as
        :meth:`LLMSkill.embed <robutler_core.LLMSkill.embed>` says, a list holds floats); any
        other sequence (a NumPy array, a tuple) is converted to a list of floats.

        Raises ConfigurationError (unknown provider, a provider without embeddings, missing
        key) or the provider's :mod:`robutler_core.errors` (upstream failures); an answer
        with another number of vectors than texts is an UpstreamError
        (``upstream_invalid_response``) naming the model.
        """
        if not texts:
            return []
        skill = await self.skill(model)
        vectors = await skill.embed(list(texts), model=skill.model)
        if len(vectors) != len(texts):
            raise invalid_response(model, f"{len(vectors)} embeddings for {len(texts)} texts")
        return [v if type(v) is list else list(map(float, v)) for v in vectors]

    async def close(self) -> None:
        """Close the skills this embedder created (not an agent's configured ones)."""
        configured = {id(s) for s in (getattr(self.agent, "skills", None) or {}).values()}
        skills, self._skills, self._ready = list(self._skills.values()), {}, {}
        for skill in skills:
            if id(skill) in configured:
                continue
            try:
                await skill.close()
            except Exception:
                logger.warning("closing %s failed", type(skill).__name__, exc_info=True)


_default: Embedder | None = None


async def embed(texts: list[str], model: str) -> list[list[float]]:
    """``texts`` embedded by ``model`` (``"provider/model"``) through the installed LLM skills:
    one ``list[float]`` per text, in order. The model's skill is created and initialised once
    per process (a module-level :class:`Embedder`).

    Raises ConfigurationError when no installed provider serves the prefix or the provider
    has no embeddings; upstream failures as :mod:`robutler_core.errors`.
    """
    global _default
    if _default is None:
        _default = Embedder()
    return await _default.embed(texts, model)

