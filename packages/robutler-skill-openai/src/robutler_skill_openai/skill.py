"""OpenAISkill and XAISkill: chat completions and embeddings through the official openai SDK.

The SDK is imported by :meth:`OpenAISkill.initialize` (in a worker thread, at the agent's
start-up), not with the plugin, so that discovering installed skills stays fast and no import
stalls the event loop at the first request.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

from robutler_core.skill import SDKLLMSkill
from robutler_core.errors import ConfigurationError, mapped_errors
from robutler_core.skill import STANDARD_PARAMS, LLMConfig, checked_chunk, checked_completion

from .errors import map_openai_error

if TYPE_CHECKING:
    import openai

DEFAULT_MAX_RETRIES = 2
"""The SDK's own retries (with exponential backoff, honouring ``retry-after``) on 408, 409,
429, 5xx and connection errors, before the error reaches the agent (and its fallbacks)."""


class OpenAIConfig(LLMConfig):
    """Options of :class:`OpenAISkill` and :class:`XAISkill` (unknown ones are refused)."""

    api_key: str | None = None
    base_url: str | None = None
    organization: str | None = None
    max_retries: int | None = pydantic.Field(None, ge=0)
    embedding_model: str | None = None


OPENAI_PARAMS: frozenset[str] = STANDARD_PARAMS | {
    "metadata", "store", "logprobs", "top_logprobs", "logit_bias", "reasoning_effort",
    "service_tier", "modalities", "audio", "prediction", "prompt_cache_key", "safety_identifier",
    "verbosity", "web_search_options",
}
"""Request parameters the OpenAI skills pass to ``POST /chat/completions`` as they are (the
openai SDK's ``chat.completions.create`` arguments, less ``n``, whose extra choices the agent
would drop, and the legacy ``functions`` / ``function_call``)."""


class OpenAISkill(SDKLLMSkill):
    """OpenAI chat models (``openai/gpt-4o-mini``) on the ``openai`` SDK.

    Works with any OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio) through
    ``base_url``.

    Config (each optional; config wins over the environment):
        model: the provider's model name (``"gpt-4o-mini"``; set from ``openai/<model>``).
        api_key: default ``$OPENAI_API_KEY``.
        base_url: default ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
        organization: default ``$OPENAI_ORG_ID``.
        temperature, max_tokens: defaults for every request (a request's own values win).
        timeout: seconds per HTTP request (default: the SDK's, 600).
        max_retries: the SDK's retries with backoff (default 2).
        embedding_model: for :meth:`embed` (default ``text-embedding-3-small``).
        fallbacks: models the agent tries after a retryable failure.

    Options are validated by :class:`OpenAIConfig` when the skill is made (ConfigurationError
    naming each bad or unknown option). Request parameters: :data:`OPENAI_PARAMS`.

    Errors: provider failures raise :mod:`robutler_core.errors` (see
    :func:`~robutler_skill_openai.errors.map_openai_error`); no API key raises
    ConfigurationError from :meth:`check_configuration` (at start-up) and from each call.
    """

    config_model = OpenAIConfig
    supported_params = OPENAI_PARAMS
    model_prefixes: ClassVar[tuple[str, ...]] = ("openai",)
    api_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str] = "OPENAI_BASE_URL"
    default_base_url: ClassVar[str | None] = None
    default_embedding_model: ClassVar[str | None] = "text-embedding-3-small"
    sends_openai_organization: ClassVar[bool] = True

    sdk_module: ClassVar[str] = "openai"

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The skill's ``AsyncOpenAI`` client, made by :meth:`initialize` (or at first use)."""
        return super().client

    def make_client(self) -> openai.AsyncOpenAI:
        """An ``AsyncOpenAI`` client from the config (key, base URL, organization, retries)."""
        import openai

        options = self.client_options(
            self.base_url_env,
            default_base_url=self.default_base_url, max_retries=DEFAULT_MAX_RETRIES,
        )
        if self.config.get("organization"):
            options["organization"] = self.config["organization"]
        elif not self.sends_openai_organization:
            # The SDK reads $OPENAI_ORG_ID by itself; it is no business of other providers.
            options["default_headers"] = {"OpenAI-Organization": openai.Omit()}
        return openai.AsyncOpenAI(**options)

    def _request(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        request = self.request_params(params, ("temperature", "max_tokens"))
        request.update(model=self.model, messages=messages)
        if tools:
            request["tools"] = tools
        # Parameters newer than the installed SDK (no argument of create) still go into the body.
        accepted = _create_arguments(type(self.client.chat.completions))
        extra = {k: request.pop(k) for k in list(request) if k not in accepted}
        if extra:
            request["extra_body"] = extra
        return request

    async def chat_completion(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """``POST /chat/completions``; returns the ``chat.completion`` as a dict."""
        params.pop("stream_options", None)
        with mapped_errors(lambda exc: map_openai_error(exc, self.full_model_name)):
            response = await self.client.chat.completions.create(**self._request(messages, tools, params))
        return checked_completion(_dump(response), self.full_model_name)

    async def chat_completion_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Streamed ``POST /chat/completions``: yields ``chat.completion.chunk`` dicts as they
        arrive (tool-call argument deltas as sent); the last carries ``usage``
        (``stream_options.include_usage`` is always asked for). Closing the iterator closes
        the HTTP response."""
        params["stream_options"] = {"include_usage": True}
        with mapped_errors(lambda exc: map_openai_error(exc, self.full_model_name)):
            stream = await self.client.chat.completions.create(stream=True, **self._request(messages, tools, params))
            async with stream:
                async for chunk in stream:
                    yield checked_chunk(_dump(chunk), self.full_model_name)

    async def embed(self, texts: str | list[str], model: str | None = None) -> list[list[float]]:
        """Embedding vectors (``POST /embeddings``): one ``list[float]`` per text, in order (a
        single string is a list of one); :meth:`LLMSkill.embed <robutler_core.LLMSkill.embed>`'s
        interface.

        ``model`` is the provider's model name (``text-embedding-3-small``); ``None``:
        ``config["embedding_model"]``, else the class's default (OpenAI:
        ``text-embedding-3-small``; xAI has none).

        Raises ConfigurationError when no embedding model is named; the mapped
        :mod:`robutler_core.errors` for provider failures.
        """
        inputs = [texts] if isinstance(texts, str) else list(texts)
        embedding_model = model or self.config.get("embedding_model") or self.default_embedding_model
        if not embedding_model:
            raise ConfigurationError(
                f"{type(self).__name__}.embed needs a model: pass model= or set config['embedding_model']"
            )
        with mapped_errors(lambda exc: map_openai_error(exc, f"{self.model_prefixes[0]}/{embedding_model}")):
            response = await self.client.embeddings.create(model=embedding_model, input=inputs)
        return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]


@functools.cache
def _create_arguments(completions_resource: type) -> frozenset[str]:
    return frozenset(inspect.signature(completions_resource.create).parameters)


def _dump(response: Any) -> Any:
    """The SDK object as a dict (the SDK builds objects without validation: a body of the
    wrong shape, or a bare JSON value, comes through as it is)."""
    return response.model_dump(exclude_none=True, warnings=False) if hasattr(response, "model_dump") else response


class XAISkill(OpenAISkill):
    """xAI's Grok models (``xai/grok-3``) through xAI's OpenAI-compatible API.

    Same config as :class:`OpenAISkill`; the API key defaults to ``$XAI_API_KEY`` and the base
    URL to ``$XAI_BASE_URL``, else ``https://api.x.ai/v1``.
    """

    model_prefixes: ClassVar[tuple[str, ...]] = ("xai",)
    api_key_env: ClassVar[str | None] = "XAI_API_KEY"
    base_url_env: ClassVar[str] = "XAI_BASE_URL"
    default_base_url: ClassVar[str | None] = "https://api.x.ai/v1"
    default_embedding_model: ClassVar[str | None] = None  # name it in config["embedding_model"]
    sends_openai_organization: ClassVar[bool] = False
