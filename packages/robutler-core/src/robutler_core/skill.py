"""The :class:`Skill` base class and :class:`LLMSkill`, the interface of model providers."""

from __future__ import annotations

import abc
import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .context import Context, get_context
from .decorators import DEFAULT_PRIORITY
from .errors import ConfigurationError, invalid_response
from .scopes import Scope, normalize_scope
from .tools import Tool

if TYPE_CHECKING:
    import pydantic

    from .agent import Agent
    from .llm_config import LLMConfig


def __getattr__(name: str) -> Any:
    if name == "LLMConfig":  # defined apart, so that importing robutler_core defines no pydantic model
        from .llm_config import LLMConfig

        return LLMConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Skill:
    """A bundle of tools, hooks and prompts that an agent is built from.

    Subclass it, decorate methods with ``@tool``, ``@hook``, ``@prompt``, ``@handoff`` and
    ``@http``, and pass an instance to ``Agent(skills={"name": MySkill(config)})``. Give each agent its own instance.

    Args:
        config: the skill's settings (from code or from the ``skills:`` mapping of an agents
            file).
        scope: default scope of the skill's tools, hooks and prompts that do not set one.
        dependencies: names of other registered skills this one needs; the agent adds missing
            ones with their default config.

    Raises:
        ConfigurationError: ``config`` does not validate against :attr:`config_model`; the
            message names the skill and every bad option.

    Class attributes:
        config_model: a pydantic model of the skill's options, or ``None`` (the default: any
            ``config`` is taken as it is). When set, ``__init__`` validates ``config`` against
            it (types coerced as pydantic does, e.g. ``"30"`` to ``30.0`` for a ``float``) and
            :attr:`config` holds the validated values of the options that were given (defaults
            are not added: ``config.get(name)`` stays ``None`` for an option left out). Give the
            model ``model_config = pydantic.ConfigDict(extra="forbid")`` to refuse unknown
            (misspelt) options::

                class WeatherConfig(pydantic.BaseModel):
                    model_config = pydantic.ConfigDict(extra="forbid")
                    units: Literal["metric", "imperial"] = "metric"
                    timeout: float = 10.0

                class WeatherSkill(Skill):
                    config_model = WeatherConfig
    """

    config_model: ClassVar[type[pydantic.BaseModel] | None] = None

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        scope: Scope = "all",
        dependencies: list[str] | None = None,
    ) -> None:
        self.config: dict[str, Any] = self.validate_config(config or {})
        self.scope = normalize_scope(scope)
        self.dependencies: list[str] = list(dependencies or [])
        self.skill_name = type(self).__name__
        self.agent: Agent | None = None

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` checked against :attr:`config_model`: the given options with their
        validated values (a copy of ``config`` when the class has no model).

        Raises ConfigurationError naming the skill class and every bad option, one per
        ``;``: ``OpenAISkill: invalid config: option 'timeout': Input should be a valid number,
        unable to parse string as a number, got 'abc'``.
        """
        if not isinstance(config, Mapping):
            raise ConfigurationError(
                f"{cls.__name__}: config must be a mapping of options, got {type(config).__name__}"
            )
        if cls.config_model is None:
            return dict(config)
        import pydantic

        try:
            validated = cls.config_model.model_validate(config)
        except pydantic.ValidationError as exc:
            problems = "; ".join(_option_problem(error) for error in exc.errors())
            raise ConfigurationError(f"{cls.__name__}: invalid config: {problems}") from None
        return validated.model_dump(exclude_unset=True)

    def check_configuration(self) -> None:
        """Raise ConfigurationError when the skill cannot work as configured (an LLM provider
        skill without an API key, say). Called at start-up, before :meth:`initialize`; cheap,
        synchronous, no I/O. The default finds nothing."""

    async def initialize(self, agent: Agent) -> None:
        """Called once per agent before its first request; set up connections here (slow
        imports and blocking set-up in ``asyncio.to_thread``)."""

    async def close(self) -> None:
        """Release what :meth:`initialize` opened (connections, clients). Called once at
        shutdown; the default does nothing."""

    def get_context(self) -> Context | None:
        """The current request's Context (``None`` outside a request)."""
        return get_context()

    def register_tool(self, func: Callable[..., Any] | Tool, scope: Scope = None) -> None:
        """Add a tool (a function, or a :class:`~robutler_core.Tool`, e.g. one with an
        explicit JSON schema) to this skill's agent at run time.

        It is offered to requests whose tool loop starts after this call, so a tool registered
        by an ``on_connection`` hook is offered to that same request. Registration is
        thread-safe; the tool is the agent's, not only this request's.
        """
        self._require_agent().register_tool(func, scope=scope, source=self)

    def unregister_tool(self, name: str) -> None:
        """Remove a tool this skill registered (with :meth:`register_tool` or ``@tool``) from
        its agent; requests whose tool loop starts after this call no longer see it.

        Raises ConfigurationError when the agent has no such tool or another skill's it is.
        """
        self._require_agent().unregister_tool(name, source=self)

    def status(self, auth_scope: str) -> dict[str, Any] | None:
        """What the skill reports about itself in its agent's info (``GET /{agent}``, under
        ``status`` and the skill's name) to a caller whose scope is ``auth_scope``: a
        JSON-ready dict (connections up or down, say), or ``None`` (the default) for nothing.
        Cheap and synchronous, no I/O: it runs on every info request."""
        return None

    def register_handoff(self, handoff: Any, scope: Scope = None) -> None:
        """Offer a handoff (``handoff(...)`` object or ``@handoff`` function) to this skill's
        agent at run time; same timing as :meth:`register_tool`."""
        self._require_agent().register_handoff(handoff, scope=scope, source=self)

    def register_hook(
        self,
        event: str,
        handler: Callable[..., Any],
        priority: int = DEFAULT_PRIORITY,
        scope: Scope = None,
    ) -> None:
        """Add a lifecycle hook to this skill's agent at run time."""
        self._require_agent().register_hook(
            event, handler, priority=priority, scope=scope, source=self
        )

    def _require_agent(self) -> Agent:
        if self.agent is None:
            raise RuntimeError(f"{self.skill_name} is not part of an agent yet")
        return self.agent


def checked_completion(completion: Any, model: str) -> dict[str, Any]:
    """``completion`` when it has the shape of a ``chat.completion``: a dict whose ``choices``
    is a non-empty list, the first with a ``message`` dict whose ``content`` is a string (or
    ``None`` or a list of parts) and whose ``tool_calls``, when present, are dicts with a
    ``function`` dict. Provider skills pass what their SDK returned through it.

    Raises UpstreamError (502, :func:`~robutler_core.errors.invalid_response`) otherwise.
    """
    choices = completion.get("choices") if isinstance(completion, dict) else None
    message = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise invalid_response(model, "a chat.completion without choices[0].message")
    if not isinstance(message.get("content"), str | list | None) or not _tool_calls_ok(message.get("tool_calls")):
        raise invalid_response(model, "a chat.completion whose message has the wrong shape")
    return completion


def checked_chunk(chunk: Any, model: str) -> dict[str, Any]:
    """``chunk`` when it has the shape of a ``chat.completion.chunk``: a dict whose ``choices``
    is a list (empty in a usage chunk) of dicts whose ``delta`` is a dict, with ``content`` a
    string (or ``None``) and ``tool_calls`` (when present) a list of dicts.

    Raises UpstreamError (502, :func:`~robutler_core.errors.invalid_response`) otherwise.
    """
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not isinstance(choices, list):
        raise invalid_response(model, "a chat.completion.chunk without a choices list")
    for choice in choices:
        delta = choice.get("delta", {}) if isinstance(choice, dict) else None
        if not (isinstance(delta, dict) and isinstance(delta.get("content"), str | None)
                and isinstance(delta.get("tool_calls") or [], list)
                and all(isinstance(call, dict) for call in delta.get("tool_calls") or [])):
            raise invalid_response(model, "a chat.completion.chunk whose delta has the wrong shape")
    return chunk


def _tool_calls_ok(calls: Any) -> bool:
    return calls is None or (isinstance(calls, list) and all(
        isinstance(call, dict) and isinstance(call.get("function"), dict) for call in calls
    ))


def _option_problem(error: Any) -> str:
    """One pydantic error as ``option 'a.b': message, got 'value'``."""
    location = ".".join(str(part) for part in error.get("loc", ())) or "(config)"
    if error.get("type") == "extra_forbidden":
        return f"option '{location}': unknown option"
    if error.get("type") == "missing":
        return f"option '{location}': required"
    return f"option '{location}': {error.get('msg')}, got {error.get('input')!r}"


STANDARD_PARAMS: frozenset[str] = frozenset({
    "tool_choice", "parallel_tool_calls", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "presence_penalty", "frequency_penalty", "seed", "user",
    "response_format",
})
"""The OpenAI chat-completions parameters every :class:`LLMSkill` is expected to honour
(:attr:`LLMSkill.supported_params` of the base class)."""


class LLMSkill(Skill, abc.ABC):
    """A skill that serves models: the interface between the agent loop and a provider.

    Class attributes:
        model_prefixes: the ``provider`` parts of ``"provider/model"`` this skill serves.
        fallback_prefixes: prefixes it serves only when no installed skill lists them in
            ``model_prefixes`` (LiteLLM serves ``openai/`` when no native OpenAI skill is
            installed).

    ``config["model"]`` is the provider's own model name (the part after the prefix).
    """

    model_prefixes: ClassVar[tuple[str, ...]] = ()
    fallback_prefixes: ClassVar[tuple[str, ...]] = ()
    supported_params: ClassVar[frozenset[str]] = STANDARD_PARAMS
    """The OpenAI request parameters this skill honours (passes on, or translates faithfully);
    the agent refuses (400) or drops a request's other parameters. Providers extend
    :data:`STANDARD_PARAMS`. The legacy ``functions`` / ``function_call`` are never in it."""
    api_key_env: ClassVar[str | None] = None
    """The environment variable holding the provider's API key (``OPENAI_API_KEY``), for
    :meth:`api_key`, :meth:`client_options` and :meth:`check_configuration`; ``None``: the skill
    needs no key."""

    @property
    def model(self) -> str | None:
        """The provider's model name this instance calls."""
        return self.config.get("model")

    @classmethod
    def model_config(cls, prefix: str, model: str) -> dict[str, Any]:
        """Config for ``"{prefix}/{model}"``: by default ``{"model": model}``."""
        return {"model": model}

    def request_params(self, params: dict[str, Any], defaults: tuple[str, ...] = ()) -> dict[str, Any]:
        """The parameters of one model call: ``config`` values of the ``defaults`` keys, then
        the request's ``params`` that are not ``None`` (they win).

        Raises ConfigurationError when the skill has no model to call.
        """
        if not self.model:
            raise ConfigurationError(
                f"{type(self).__name__} has no model: set config['model'] or the agent's model"
            )
        merged = {k: self.config[k] for k in defaults if self.config.get(k) is not None}
        merged.update({k: v for k, v in params.items() if v is not None})
        return merged

    def api_key(self) -> str | None:
        """The provider API key: ``config["api_key"]``, else ``$`` :attr:`api_key_env`.

        Raises ConfigurationError naming both places when the skill needs a key and has none.
        """
        api_key = self.config.get("api_key")
        if api_key or self.api_key_env is None:
            return api_key
        api_key = os.environ.get(self.api_key_env)
        if not api_key:
            raise ConfigurationError(
                f"{type(self).__name__} needs an API key: set config['api_key'] or ${self.api_key_env}"
            )
        return api_key

    def check_configuration(self) -> None:
        """Raise ConfigurationError when the provider's API key is missing (see :meth:`api_key`)."""
        self.api_key()

    def client_options(
        self, base_url_env: str, *, default_base_url: str | None = None, max_retries: int = 2
    ) -> dict[str, Any]:
        """Constructor options for a provider SDK client from the skill's config, over the
        environment: ``api_key`` (:meth:`api_key`), ``base_url``
        (``config["base_url"]``, ``$base_url_env`` or ``default_base_url``; left out when none),
        ``max_retries`` (``config["max_retries"]``, default ``max_retries``) and ``timeout``
        (seconds, ``config["timeout"]``, left out when unset). The names are the ones the
        openai and anthropic SDKs take.

        Raises ConfigurationError when there is no API key.
        """
        options: dict[str, Any] = {
            "api_key": self.api_key(),
            "max_retries": int(self.config.get("max_retries") if self.config.get("max_retries") is not None else max_retries),
        }
        base_url = self.config.get("base_url") or os.environ.get(base_url_env) or default_base_url
        if base_url:
            options["base_url"] = base_url
        if self.config.get("timeout") is not None:
            options["timeout"] = float(self.config["timeout"])
        return options

    async def initialize(self, agent: Agent) -> None:
        """Load the pricing plugins and their price data (in a worker thread), so that the
        first priced call does not. Provider skills extend it: import the SDK (in a thread),
        build the client, then ``await super().initialize(agent)``."""
        from .plugins import price

        await price(self.full_model_name, {})

    @property
    def full_model_name(self) -> str:
        """``"prefix/model"`` (the first of :attr:`model_prefixes`), as ``Agent(model=...)`` takes it."""
        prefixes = type(self).model_prefixes
        if not prefixes:
            return self.model or type(self).__name__
        return f"{prefixes[0]}/{self.model}" if self.model else prefixes[0]

    @property
    def fallbacks(self) -> list[str]:
        """``config["fallbacks"]``: models (``"provider/model"``) the agent tries, in order,
        when this one fails with a retryable error (429, 5xx, timeout)."""
        return list(self.config.get("fallbacks") or [])

    async def record_usage(self, context: Context, usage: dict[str, Any] | None) -> None:
        """Record one call's ``usage`` on ``context`` (a ``kind="llm"`` record), then price it
        with :meth:`usage_cost`. The record exists before the pricing is awaited, so a request
        cancelled meanwhile keeps it (unpriced)."""
        record = context.track_llm_usage(self.full_model_name, usage)
        if record is not None and usage:
            record.set_cost_usd(await self.usage_cost(usage))

    async def usage_cost(self, usage: dict[str, Any]) -> float | None:
        """The cost in US dollars of one call's ``usage`` (OpenAI ``usage`` dict: ``prompt_tokens``
        counting cached input too, ``prompt_tokens_details.cached_tokens`` read from the prompt
        cache, ``prompt_tokens_details.cache_creation_tokens`` written to it), or ``None``
        when unknown. By default the installed plugins' ``model_cost`` hook prices
        :attr:`full_model_name` (robutler-skill-litellm does, from LiteLLM's price map): in a
        worker thread the first time the process prices the model, on the event loop after
        (:func:`robutler_core.plugins.price`); a provider skill with its own prices overrides
        this."""
        from .plugins import price

        return await price(self.full_model_name, usage)

    async def embed(self, texts: str | list[str], model: str | None = None) -> list[list[float]]:
        """Embedding vectors of ``texts``: one ``list[float]`` per text, in the order given
        (a single string is a list of one). ``model`` is the provider's own embedding model
        name (the part after ``provider/``, as ``Agent(model=...)`` splits it); ``None``: the
        skill's ``config["embedding_model"]`` or its default.

        Providers with embeddings override this (OpenAI's ``POST /embeddings``, LiteLLM's
        ``aembedding``, robutler-skill-memory's local sentence-transformers models); errors
        are :mod:`robutler_core.errors` as for chat calls.

        Raises ConfigurationError (this base implementation) naming the skill: it has no
        embeddings.
        """
        raise ConfigurationError(
            f"{type(self).__name__} has no embeddings: use an embedding model of a provider "
            "that has them (e.g. 'openai/text-embedding-3-small', 'local/all-MiniLM-L6-v2')"
        )

    @abc.abstractmethod
    async def chat_completion(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """One model call; returns a ``chat.completion`` dict in OpenAI's format.

        ``params`` are OpenAI request parameters (``temperature``, ``max_tokens``,
        ``tool_choice``, ...). Raises :mod:`robutler_core.errors` for provider failures.
        """

    @abc.abstractmethod
    def chat_completion_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """One streamed model call; yields ``chat.completion.chunk`` dicts.

        Tool calls arrive as ``delta.tool_calls`` fragments; the last chunk carries ``usage``
        when the provider reports it.
        """


class SDKLLMSkill(LLMSkill):
    """An :class:`LLMSkill` that calls its provider through an SDK client object (the
    ``openai`` and ``anthropic`` skills; a third-party provider on its own SDK alike).

    Subclasses set :attr:`sdk_module` and implement :meth:`make_client`. The client is built
    once: in :meth:`initialize` (after the SDK is imported in a worker thread, so the event
    loop never waits for the import), or at first use when the skill is called without
    having been initialised; :meth:`close` closes it (its async ``close()``).
    """

    sdk_module: ClassVar[str]
    """The SDK's import name (``"openai"``), imported by :meth:`initialize` off the event loop."""

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._client: Any = None

    @abc.abstractmethod
    def make_client(self) -> Any:
        """A new SDK client from :attr:`config` (see :meth:`client_options`).

        Raises ConfigurationError when it cannot be built (no API key)."""

    @property
    def client(self) -> Any:
        """The skill's SDK client, made by :meth:`initialize` (or at first use).

        Raises ConfigurationError when it cannot be built (no API key)."""
        if self._client is None:
            self._client = self.make_client()
        return self._client

    async def initialize(self, agent: Agent) -> None:
        """Import the SDK (in a worker thread) and build the client, once.

        Without an API key the client is not built and nothing is raised: the skill may be a
        fallback that is never reached; :meth:`check_configuration` reports the missing key
        at start-up and a call raises ConfigurationError.
        """
        import importlib

        await asyncio.to_thread(importlib.import_module, self.sdk_module)
        try:
            self.client  # noqa: B018 (builds it)
        except ConfigurationError:
            pass
        await super().initialize(agent)

    async def close(self) -> None:
        """Close the client's HTTP connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()
