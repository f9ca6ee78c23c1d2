"""AnthropicSkill: Claude models through the official anthropic SDK, in OpenAI's format.

The SDK is imported by :meth:`AnthropicSkill.initialize` (in a worker thread, at the agent's
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
from robutler_core.errors import invalid_response, mapped_errors
from robutler_core.skill import LLMConfig

from .errors import map_anthropic_error
from .translate import SUPPORTED_PARAMS, StreamTranslator, to_anthropic_request, to_openai_completion

if TYPE_CHECKING:
    import anthropic

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when neither the request nor the config sets it (Anthropic requires one)."""

DEFAULT_MAX_RETRIES = 2
"""The SDK's own retries (exponential backoff, honouring ``retry-after``) on 408, 409, 429,
5xx, 529 and connection errors, before the error reaches the agent (and its fallbacks)."""


@functools.cache
def _create_arguments(messages_resource: type) -> frozenset[str]:
    return frozenset(inspect.signature(messages_resource.create).parameters)


class AnthropicConfig(LLMConfig):
    """Options of :class:`AnthropicSkill` (unknown ones are refused)."""

    api_key: str | None = None
    base_url: str | None = None
    max_retries: int | None = pydantic.Field(None, ge=0)


class AnthropicSkill(SDKLLMSkill):
    """Claude models (``anthropic/claude-sonnet-4-5``) on the ``anthropic`` SDK.

    Takes and returns OpenAI's chat format; :mod:`robutler_skill_anthropic.translate` maps it
    to Anthropic's Messages API both ways, streaming included.

    Config (each optional; config wins over the environment):
        model: the provider's model name (set from ``anthropic/<model>``).
        api_key: default ``$ANTHROPIC_API_KEY``.
        base_url: default ``$ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com``.
        max_tokens: default :data:`DEFAULT_MAX_TOKENS` (4096); a request's own wins.
        temperature: default for every request (Anthropic accepts 0 to 1).
        timeout: seconds per HTTP request (default: the SDK's, 600).
        max_retries: the SDK's retries with backoff (default 2).
        fallbacks: models the agent tries after a retryable failure.

    Options are validated by :class:`AnthropicConfig` when the skill is made (ConfigurationError
    naming each bad or unknown option). Request parameters:
    :data:`~robutler_skill_anthropic.translate.SUPPORTED_PARAMS`.

    Errors: provider failures raise :mod:`robutler_core.errors` (see
    :func:`~robutler_skill_anthropic.errors.map_anthropic_error`); requests Anthropic cannot
    express raise BadRequestError; no API key raises ConfigurationError from
    :meth:`check_configuration` (at start-up) and from each call.
    """

    config_model = AnthropicConfig
    supported_params = SUPPORTED_PARAMS
    model_prefixes: ClassVar[tuple[str, ...]] = ("anthropic",)
    api_key_env: ClassVar[str | None] = "ANTHROPIC_API_KEY"

    sdk_module: ClassVar[str] = "anthropic"

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The skill's ``AsyncAnthropic`` client, made by :meth:`initialize` (or at first use)."""
        return super().client

    def make_client(self) -> anthropic.AsyncAnthropic:
        """An ``AsyncAnthropic`` client from the config (key, base URL, retries, timeout)."""
        import anthropic

        options = self.client_options("ANTHROPIC_BASE_URL", max_retries=DEFAULT_MAX_RETRIES)
        return anthropic.AsyncAnthropic(**options)

    def _request(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        request = to_anthropic_request(
            messages, tools, self.request_params(params, ("temperature",)), model=self.model,
            max_tokens=int(self.config.get("max_tokens") or DEFAULT_MAX_TOKENS),
        )
        # Fields this SDK version has no argument for (newer SDKs dropped temperature/top_p
        # from the signature) still go into the JSON body.
        accepted = _create_arguments(type(self.client.messages))
        extra = {k: request.pop(k) for k in list(request) if k not in accepted}
        if extra:
            request["extra_body"] = extra
        return request

    async def chat_completion(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """``POST /v1/messages``; returns a ``chat.completion`` dict."""
        request = self._request(messages, tools, params)
        with mapped_errors(lambda exc: map_anthropic_error(exc, self.full_model_name)):
            message = await self.client.messages.create(**request)
        body = message.model_dump(warnings=False) if hasattr(message, "model_dump") else message
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise invalid_response(self.full_model_name, "a Message without a content list")
        try:
            return to_openai_completion(body)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise invalid_response(self.full_model_name, f"a Message of the wrong shape ({exc})") from exc

    async def chat_completion_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Streamed ``POST /v1/messages``: each Anthropic event as OpenAI chunks, as it
        arrives (see :class:`~robutler_skill_anthropic.translate.StreamTranslator`); the last
        carries ``usage``. Closing the iterator closes the HTTP response.

        Raises UpstreamError (502) when the stream ends without ``message_stop`` (cut short,
        or events that are not Anthropic's)."""
        request = self._request(messages, tools, params)
        translator = StreamTranslator()
        with mapped_errors(lambda exc: map_anthropic_error(exc, self.full_model_name)):
            stream = await self.client.messages.create(stream=True, **request)
            async with stream:
                async for event in stream:
                    for chunk in self._translated(translator, event):
                        yield chunk
        if not translator.finished:
            raise invalid_response(self.full_model_name, "the stream ended before message_stop")

    def _translated(self, translator: StreamTranslator, event: Any) -> list[dict[str, Any]]:
        """The chunks of one stream event; UpstreamError (502) for an event of the wrong shape."""
        data = event.model_dump(warnings=False) if hasattr(event, "model_dump") else event
        try:
            if not isinstance(data, dict):
                raise TypeError(f"a {type(data).__name__}, not an object")
            return translator.feed(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise invalid_response(self.full_model_name, f"a stream event of the wrong shape ({exc})") from exc
