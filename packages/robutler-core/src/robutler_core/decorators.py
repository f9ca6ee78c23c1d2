"""``@tool``, ``@hook`` and ``@prompt``: mark a skill's methods (or plain functions).

The marks are read when a skill is added to an agent; decorating changes nothing else about the
function, which stays callable as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from .hookspecs import hookimpl
from .scopes import Scope, normalize_scope
from .tools import TOOL_MARKER

F = TypeVar("F", bound=Callable[..., Any])

HOOK_MARKER = "_robutler_hook"
PROMPT_MARKER = "_robutler_prompt"
DEFAULT_PRIORITY = 50


@overload
def tool(func: F, /) -> F: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, scope: Scope = None
) -> Callable[[F], F]: ...
def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    scope: Scope = None,
) -> Any:
    """Mark a function as a server-side tool, bare (``@tool``) or with options.

    Args:
        name: the tool's name on the wire (default: the function's name).
        description: shown to the model (default: the docstring).
        scope: who may see and run it: ``"all"`` (default), ``"owner"``, ``"admin"``, a
            custom name, or a list.
    """
    normalize_scope(scope)  # fail at decoration time on a bad scope

    def mark(f: F) -> F:
        setattr(f, TOOL_MARKER, {"name": name, "description": description, "scope": scope})
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


def prompt(*, priority: int = DEFAULT_PRIORITY, scope: Scope = None) -> Callable[[F], F]:
    """Mark a method whose returned text is appended to the system message.

    The function takes an optional ``context`` parameter and returns a string (sync or async);
    outputs are joined in priority order (lower first) with a blank line.
    """
    normalize_scope(scope)

    def mark(f: F) -> F:
        setattr(f, PROMPT_MARKER, {"priority": priority, "scope": scope})
        return f

    return mark
