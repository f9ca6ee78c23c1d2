"""Robutler's hookspecs: plugin discovery (per process) and the request lifecycle (per agent).

Plugin authors import :data:`hookimpl` (or use ``@hook``) from ``robutler_core``, never pluggy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from .context import Context

hookspec = HookspecMarker("robutler")
hookimpl = HookimplMarker("robutler")


class DiscoverySpecs:
    """Hooks a plugin distribution implements to add to Robutler."""

    @hookspec
    def register_skills(self, register: Callable[..., None]) -> None:
        """Register skill classes: call ``register(SkillClass, name="weather")`` for each."""

    @hookspec(firstresult=True)
    def model_cost(self, model: str, usage: dict[str, Any]) -> float | None:
        """The cost in US dollars of one model call, or ``None`` when this plugin does not know.

        ``model`` is ``"provider/model"`` as written in ``Agent(model=...)``; ``usage`` is
        OpenAI's ``usage`` dict: ``prompt_tokens`` counts every input token, cached ones
        included; ``prompt_tokens_details.cached_tokens`` of them were cache reads and
        ``prompt_tokens_details.cache_creation_tokens`` cache writes (Anthropic's
        ``cache_read_input_tokens`` / ``cache_creation_input_tokens``, translated by its
        skill); ``completion_tokens`` the output. Price each kind at its own rate. The first
        plugin that answers wins (robutler-skill-litellm answers from LiteLLM's price map).

        The first call for a model in a process runs in a worker thread (load price data
        then: an LLM skill's ``initialize`` makes that call at start-up); later calls run on
        the event loop, once per model call, so they must answer from memory without I/O.
        """


class LifecycleSpecs:
    """Request lifecycle events; a skill's ``@hook(event)`` method implements one.

    Each hook may be sync or async. A hook's return value replaces the event's payload
    (``message``, ``chunk``, ``tool_call``, ``result``) when it is not ``None``; returning
    ``None`` (or the context) keeps it.
    """

    @hookspec
    def on_connection(self, context: Context) -> None:
        """Once per request, before the model is called: auth, limits, input checks."""

    @hookspec
    def on_message(self, context: Context, message: dict[str, Any]) -> Any:
        """Each complete message: incoming ones at the start, the assistant's at the end."""

    @hookspec
    def on_chunk(self, context: Context, chunk: dict[str, Any]) -> Any:
        """Each ``chat.completion.chunk`` before it is sent to the client.

        Return a chunk to replace it, or :data:`DROP` to send nothing (later hooks skip it).
        """

    @hookspec
    def before_toolcall(self, context: Context, tool_call: dict[str, Any]) -> Any:
        """Before a server-side tool call runs: may return a rewritten call (OpenAI
        ``tool_calls`` entry), or raise :class:`ToolCallBlocked` so that the tool does not run
        and the model sees the exception's ``result`` instead. Any other exception ends the
        request."""

    @hookspec
    def after_toolcall(self, context: Context, tool_call: dict[str, Any], result: str) -> Any:
        """After a server-side tool call ran (or was blocked); may rewrite its result (a string)."""

    @hookspec
    def before_handoff(self, context: Context, handoff: dict[str, Any]) -> Any:
        """Before a handoff runs. ``handoff`` is ``{"name", "type", "target", "arguments",
        "messages"}``; return a rewritten dict (e.g. filtered ``messages``) or raise to end
        the request."""

    @hookspec
    def after_handoff(self, context: Context, handoff: dict[str, Any], result: Any) -> Any:
        """After a handoff returned; ``result`` is a :class:`~robutler_core.HandoffResult`,
        which the hook may replace."""

    @hookspec
    def finalize_connection(self, context: Context) -> None:
        """Once per request, always (success, error or disconnect): billing, cleanup."""


LIFECYCLE_EVENTS: tuple[str, ...] = (
    "on_connection",
    "on_message",
    "on_chunk",
    "before_toolcall",
    "after_toolcall",
    "before_handoff",
    "after_handoff",
    "finalize_connection",
)
"""Every lifecycle event, in the order they first fire in a request."""

DROP: Any = type("Drop", (), {"__repr__": lambda self: "DROP", "__slots__": ()})()
"""Returned by an ``on_chunk`` hook: the chunk is not sent, and later hooks do not see it."""


class ToolCallBlocked(Exception):
    """Raised by a ``before_toolcall`` hook to block a call; the model sees ``result``.

    Args:
        result: what the model receives as the tool's result (a string, or anything JSON-able).
    """

    def __init__(self, result: Any = "This tool call was blocked.") -> None:
        super().__init__(result)
        self.result = result


OBSERVING_EVENTS = frozenset({"after_toolcall", "after_handoff", "finalize_connection"})
"""Events whose hooks only observe: an exception is logged and never loses the response.

Every other event fails closed: its hook's exception ends the request with the mapped error.
"""
