"""LiteLLMSkill: any provider LiteLLM supports, as a Robutler LLM skill.

LiteLLM takes seconds to import: :meth:`LiteLLMSkill.initialize` imports it in a worker thread
at the agent's start-up, so the first request does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pydantic

from robutler_core import LLMSkill
from robutler_core.errors import ConfigurationError, mapped_errors
from robutler_core.skill import STANDARD_PARAMS, LLMConfig, checked_chunk, checked_completion

from .errors import map_litellm_error

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Config keys passed to LiteLLM as they are (config wins over the environment).
_CONNECTION = ("api_key", "api_base", "api_version", "timeout")
_PASSED = (*_CONNECTION, "temperature", "max_tokens")


def _litellm() -> Any:
    """LiteLLM, imported on first use (its import takes seconds), with its banners off."""
    import litellm

    litellm.suppress_debug_info = True
    return litellm


class LiteLLMConfig(LLMConfig):
    """Options of :class:`LiteLLMSkill` (unknown ones are refused)."""

    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    retries: int | None = pydantic.Field(None, ge=0)
    embedding_model: str | None = None


LITELLM_PARAMS: frozenset[str] = STANDARD_PARAMS | {
    "logprobs", "top_logprobs", "logit_bias", "reasoning_effort", "service_tier", "modalities",
    "audio", "prediction", "store", "prompt_cache_key", "safety_identifier", "verbosity",
    "web_search_options",
}
"""Request parameters passed to ``litellm.acompletion`` (its OpenAI-named arguments, less ``n``,
the legacy ``functions`` / ``function_call``, and ``metadata``, which LiteLLM keeps for its own
logging). LiteLLM translates each for the provider and answers a parameter the provider cannot
take with ``UnsupportedParamsError`` (BadRequestError, 400, here)."""


class LiteLLMSkill(LLMSkill):
    """Calls models through LiteLLM (https://docs.litellm.ai).

    Serves ``litellm/<litellm model>`` (``litellm/openai/gpt-4o`` is LiteLLM's
    ``openai/gpt-4o``), and ``openai/``, ``anthropic/``, ``xai/`` ... when no native skill for
    that provider is installed.

    Config (each optional, over the provider's environment variables such as
    ``OPENAI_API_KEY``): ``model``, ``api_key``, ``api_base``, ``api_version``, ``temperature``,
    ``max_tokens``, ``timeout`` (seconds), ``retries`` (LiteLLM's ``num_retries``, default 0
    here: the caller decides), ``fallbacks`` (Robutler models, ``"provider/model"``, that the
    agent tries in order after a retryable failure), ``embedding_model`` (default
    ``openai/text-embedding-3-small``).

    Options are validated by :class:`LiteLLMConfig` when the skill is made. Request
    parameters: :data:`LITELLM_PARAMS`. :meth:`check_configuration` asks
    ``litellm.validate_environment`` which keys the model's provider needs.

    Cost: :func:`robutler_skill_litellm.pricing.model_cost` prices any model of LiteLLM's
    price map; the plugin answers the ``model_cost`` hook for every LLM skill.

    Errors: provider failures raise :mod:`robutler_core.errors` (see
    :func:`robutler_skill_litellm.errors.map_litellm_error`).
    """

    model_prefixes: ClassVar[tuple[str, ...]] = ("litellm",)
    fallback_prefixes: ClassVar[tuple[str, ...]] = (
        "openai", "anthropic", "xai", "azure", "gemini", "vertex_ai", "bedrock", "mistral",
        "groq", "cohere", "ollama", "deepseek", "openrouter", "together_ai",
    )

    config_model = LiteLLMConfig
    supported_params = LITELLM_PARAMS

    @classmethod
    def model_config(cls, prefix: str, model: str) -> dict[str, Any]:
        return {"model": model if prefix == "litellm" else f"{prefix}/{model}"}

    def check_configuration(self) -> None:
        """Raise ConfigurationError when the environment lacks what the model's provider needs
        (``litellm.validate_environment``: e.g. ``OPENAI_API_KEY`` for ``openai/...``,
        ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` for ``bedrock/...``), given
        ``config["api_key"]`` and ``config["api_base"]``. Nothing is checked without a model.

        Imports LiteLLM (seconds, once per process; :meth:`initialize` needs it anyway). Its
        table knows the usual variables only: credentials from elsewhere (a cloud instance's
        role for Bedrock or Vertex AI) are reported missing.
        """
        if not self.model:
            return
        result = _litellm().validate_environment(
            self.model, api_key=self.config.get("api_key"), api_base=self.config.get("api_base"),
            api_version=self.config.get("api_version"),
        )
        missing = result.get("missing_keys") or []
        if missing:
            variables = ", ".join(f"${name}" for name in missing)
            raise ConfigurationError(
                f"{type(self).__name__} for {self.model} needs {variables} (or config['api_key'] / "
                "config['api_base'])"
            )

    async def initialize(self, agent: Any = None) -> None:
        """Import LiteLLM in a worker thread (it takes seconds), so that no request waits."""
        await asyncio.to_thread(_litellm)
        await super().initialize(agent)

    def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]) -> dict[str, Any]:
        request = self.request_params(params, _PASSED)
        request["num_retries"] = int(self.config.get("retries", 0))
        request.update(model=self.model, messages=messages)
        if tools:
            request["tools"] = tools
        return request

    async def chat_completion(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """One LiteLLM ``acompletion``; returns a ``chat.completion`` dict."""
        litellm = _litellm()

        params.pop("stream_options", None)
        with mapped_errors(lambda exc: map_litellm_error(exc, self.model)):
            response = await litellm.acompletion(**self._request(messages, tools, params))
        return checked_completion(response.model_dump(exclude_none=True), self.full_model_name)

    async def chat_completion_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """A streamed LiteLLM ``acompletion``; yields ``chat.completion.chunk`` dicts, the last
        with ``usage`` (``stream_options.include_usage`` is always asked for)."""
        litellm = _litellm()

        params["stream_options"] = {"include_usage": True}
        with mapped_errors(lambda exc: map_litellm_error(exc, self.model)):
            stream = await litellm.acompletion(stream=True, **self._request(messages, tools, params))
            async for chunk in stream:
                yield checked_chunk(chunk.model_dump(exclude_none=True), self.full_model_name)

    async def embed(self, texts: str | list[str], model: str | None = None) -> list[list[float]]:
        """Embedding vectors of ``texts`` via LiteLLM's ``aembedding``: one ``list[float]`` per
        text, in order (a single string is a list of one); :meth:`LLMSkill.embed
        <robutler_core.LLMSkill.embed>`'s interface.

        ``model`` is LiteLLM's model name (``openai/text-embedding-3-small``,
        ``cohere/embed-english-v3.0``); ``None``: ``config["embedding_model"]``, else
        ``openai/text-embedding-3-small``. The skill's ``api_key``/``api_base`` options apply.
        Raises the mapped :mod:`robutler_core.errors` for provider failures (missing key 401,
        429, 5xx, timeouts).
        """
        litellm = _litellm()

        inputs = [texts] if isinstance(texts, str) else list(texts)
        request = {k: self.config[k] for k in _CONNECTION if self.config.get(k) is not None}
        embedding_model = model or self.config.get("embedding_model") or "openai/text-embedding-3-small"
        with mapped_errors(lambda exc: map_litellm_error(exc, embedding_model)):
            response = await litellm.aembedding(model=embedding_model, input=inputs, **request)
        return [item["embedding"] for item in sorted(response.data, key=lambda d: d["index"])]
