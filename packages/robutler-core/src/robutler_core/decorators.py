"""``@tool``, ``@hook``, ``@prompt``, ``@handoff`` and ``@http``: mark a skill's methods (or
plain functions).

The marks are read when a skill is added to an agent; decorating changes nothing else about the
function, which stays callable as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

from .handoffs import HANDOFF_MARKER, Handoff, LLMHandoff, LocalAgentHandoff
from .hookspecs import hookimpl
from .scopes import Scope, normalize_scope
from .tools import TOOL_MARKER, check_timeout

F = TypeVar("F", bound=Callable[..., Any])

HOOK_MARKER = "_robutler_hook"
PROMPT_MARKER = "_robutler_prompt"
HTTP_MARKER = "_robutler_http"
DEFAULT_PRIORITY = 50
HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


@overload
def tool(func: F, /) -> F: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, scope: Scope = None,
    timeout: float | None = None,
) -> Callable[[F], F]: ...
def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    scope: Scope = None,
    timeout: float | None = None,
) -> Any:
    """Mark a function as a server-side tool, bare (``@tool``) or with options.

    Args:
        name: the tool's name on the wire (default: the function's name).
        description: shown to the model (default: the docstring).
        scope: who may see and run it: ``"all"`` (default), ``"owner"``, ``"admin"``, a
            custom name, or a list.
        timeout: seconds a call may take (default: the agent's ``tool_timeout``, 60); past
            it the call is cancelled and the model gets an error result. A synchronous tool's
            thread cannot be stopped: it runs on until the function returns.

    Raises TypeError for a bad scope or a timeout that is not a positive number.
    """
    normalize_scope(scope)  # fail at decoration time on a bad scope
    check_timeout(timeout)

    def mark(f: F) -> F:
        setattr(f, TOOL_MARKER, {"name": name, "description": description, "scope": scope, "timeout": timeout})
        return f

    return mark(func) if func is not None else mark


def hook(event: str, *, priority: int = DEFAULT_PRIORITY, scope: Scope = None) -> Callable[[F], F]:
    """Mark a method as the implementation of a lifecycle event (a pluggy hookimpl).

    Args:
        event: one of :data:`robutler_core.hookspecs.LIFECYCLE_EVENTS`; a misspelt event fails
            when the skill is added to an agent.
        priority: lower runs first; equal priorities keep registration order.
        scope: the caller scopes it runs for (default: everyone).
    """
    if not isinstance(priority, int):
        raise TypeError(f"hook priority must be an int, got {priority!r}")
    normalize_scope(scope)

    def mark(f: F) -> F:
        setattr(f, HOOK_MARKER, {"priority": priority, "scope": scope})
        return hookimpl(specname=event)(f)

    return mark


def prompt(
    *, priority: int = DEFAULT_PRIORITY, scope: Scope = None, on_error: Literal["raise", "skip"] = "raise"
) -> Callable[[F], F]:
    """Mark a method whose returned text is appended to the system message.

    The function takes an optional ``context`` parameter and returns a string (sync or async);
    outputs are joined in priority order (lower first) with a blank line.

    Args:
        priority: lower comes first; equal priorities keep the order of definition.
        scope: the caller scopes it applies to (default: everyone, or the skill's scope).
        on_error: ``"raise"`` (the default): an exception fails the request, like a guarding
            hook (a :mod:`robutler_core.errors` exception keeps its status, others are 500);
            ``"skip"``: it is logged at ERROR and the prompt is left out.
    """
    normalize_scope(scope)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"@prompt on_error must be 'raise' or 'skip', got {on_error!r}")

    def mark(f: F) -> F:
        setattr(f, PROMPT_MARKER, {"priority": priority, "scope": scope, "on_error": on_error})
        return f

    return mark


def handoff(
    target: Any = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    scope: Scope = None,
    handoff_type: str = "agent",
    agent: Any = None,
    model: Any = None,
) -> Any:
    """Declare a handoff, as a decorator or as a helper.

    As a decorator (``@handoff`` or ``@handoff(name=..., scope=..., handoff_type=...)``) it
    marks a function or skill method whose signature is the tool schema and which returns a
    :class:`~robutler_core.HandoffResult` (any other value is wrapped in one).

    As a helper it returns a :class:`~robutler_core.handoffs.Handoff` for ``Agent(handoffs=[...])``
    or ``register_handoff``:

    * ``handoff("billing")``, ``handoff(agent=billing_agent)``: a local agent (a name
      without ``/``, or an Agent);
    * ``handoff("anthropic/claude-3-5-sonnet-20241022")``, ``handoff(model="test")``: a model,
      resolved through the installed LLM skills like ``Agent(model=...)``.

    Raises:
        ValueError: a bad scope; ``TypeError``: a target that is neither.
    """
    normalize_scope(scope)
    options = {"name": name, "description": description, "scope": scope}
    if agent is not None or model is not None or (target is not None and not callable(target)):
        chosen = agent if agent is not None else model if model is not None else target
        if model is not None or (isinstance(chosen, str) and "/" in chosen) or _is_llm_skill(chosen):
            return LLMHandoff(chosen, **options)
        if isinstance(chosen, str) or hasattr(chosen, "run"):
            return LocalAgentHandoff(chosen, **options)
        raise TypeError(f"handoff target must be an agent, an agent name or a model, got {chosen!r}")

    def mark(f: F) -> F:
        setattr(f, HANDOFF_MARKER, {**options, "handoff_type": handoff_type})
        return f

    return mark(target) if target is not None else mark


def http(path: str, method: str = "get", *, scope: Scope = None) -> Callable[[F], F]:
    """Mark a function or skill method as an HTTP handler, served at ``/{agent}{path}``.

    The server passes query parameters, path parameters (``/items/{item_id}``) and the JSON
    body to the handler's parameters as FastAPI does; a parameter annotated with
    ``fastapi.Request`` receives the request, one named ``context`` the request's Context
    (after the ``on_connection`` hooks ran, so ``context.auth_scope`` is set). A caller
    outside ``scope`` gets 403. The return value is sent as JSON (a Response is sent as is).

    Raises:
        ValueError: an unknown ``method`` or a path not starting with ``/`` or clashing with
            ``/chat/completions``.
    """
    method = method.lower()
    if method not in HTTP_METHODS:
        raise ValueError(f"invalid HTTP method {method!r}; use one of: {', '.join(HTTP_METHODS)}")
    if not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") in ("", "/chat/completions"):
        raise ValueError(
            f"@http path {path!r} must start with '/', name something, and not be /chat/completions"
        )
    normalize_scope(scope)

    def mark(f: F) -> F:
        setattr(f, HTTP_MARKER, {"path": path.rstrip("/"), "method": method, "scope": scope})
        return f

    return mark


def definition_order(cls: type) -> list[str]:
    """The attribute names of ``cls`` in the order they are defined: a base class's first
    (in reverse method-resolution order), then each subclass's new ones; an override keeps the
    place of what it overrides. Marked methods (tools, hooks, prompts, handoffs, routes) of a
    skill are registered in this order, so equal priorities run in the order written."""
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        names.update(dict.fromkeys(vars(klass)))
    return list(names)


def _is_llm_skill(value: Any) -> bool:
    from .skill import LLMSkill

    return isinstance(value, LLMSkill)



