"""The :class:`Skill` base class and :class:`LLMSkill`, the interface of model providers."""

from __future__ import annotations

import abc
import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .context import Context, get_context
from .decorators import DEFAULT_PRIORITY
from .errors import ConfigurationError
from .scopes import Scope, normalize_scope

if TYPE_CHECKING:
    from .agent import Agent


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
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        scope: Scope = "all",
        dependencies: list[str] | None = None,
    ) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.scope = normalize_scope(scope)
        self.dependencies: list[str] = list(dependencies or [])
        self.skill_name = type(self).__name__
        self.agent: Agent | None = None

    async def initialize(self, agent: Agent) -> None:
        """Called once per agent before its first request; set up connections here."""

    def get_context(self) -> Context | None:
        """The current request's Context (``None`` outside a request)."""
        return get_context()

    def register_tool(self, func: Callable[..., Any], scope: Scope = None) -> None:
        """Add a tool to this skill's agent at run time.

        It is offered to requests whose tool loop starts after this call, so a tool registered
        by an ``on_connection`` hook is offered to that same request. Registration is
        thread-safe; the tool is the agent's, not only this request's.
        """
        self._require_agent().register_tool(func, scope=scope, source=self)

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

    def client_options(
        self, api_key_env: str, base_url_env: str, *, default_base_url: str | None = None, max_retries: int = 2
    ) -> dict[str, Any]:
        """Constructor options for a provider SDK client from the skill's config, over the
        environment: ``api_key`` (``config["api_key"]`` or ``$api_key_env``), ``base_url``
        (``config["base_url"]``, ``$base_url_env`` or ``default_base_url``; left out when none),
        ``max_retries`` (``config["max_retries"]``, default ``max_retries``) and ``timeout``
        (seconds, ``config["timeout"]``, left out when unset). The names are the ones the
        openai and anthropic SDKs take.

        Raises ConfigurationError when there is no API key.
        """
        api_key = self.config.get("api_key") or os.environ.get(api_key_env)
        if not api_key:
            raise ConfigurationError(
                f"{type(self).__name__} needs an API key: set config['api_key'] or ${api_key_env}"
            )
        options: dict[str, Any] = {
            "api_key": api_key,
            "max_retries": int(self.config.get("max_retries", max_retries)),
        }
        base_url = self.config.get("base_url") or os.environ.get(base_url_env) or default_base_url
        if base_url:
            options["base_url"] = base_url
        if self.config.get("timeout") is not None:
            options["timeout"] = float(self.config["timeout"])
        return options

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
        """The cost in US dollars of one call's ``usage`` (OpenAI ``usage`` dict), or ``None``
        when unknown. By default the installed plugins' ``model_cost`` hook prices
        :attr:`full_model_name` (robutler-skill-litellm does, from LiteLLM's price map); a
        provider skill with its own prices overrides this."""
        from .plugins import model_cost

        return await asyncio.to_thread(model_cost, self.full_model_name, usage)

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
