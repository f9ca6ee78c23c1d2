"""``@http`` handlers of an agent: the route objects and the serving of one call.

robutler-server mounts each :class:`HttpRoute` of ``agent.http_routes`` at ``/{agent}{path}``
and calls :func:`serve_http` (through :meth:`Agent.http_request`) for each request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .tools import call_function

if TYPE_CHECKING:
    from .agent import Agent
    from .context import Context


class HttpRoute:
    """An ``@http`` handler of an agent: served by robutler-server at ``/{agent}{path}``.

    Attributes:
        path: the path under the agent (starts with ``/``).
        method: lower-case HTTP method.
        func: the handler (sync or async).
        scope: the caller scopes admitted (``None``: everyone).
        source: the skill (or agent) that declared it.
        takes_context: whether ``func`` has a ``context`` parameter.
    """

    def __init__(self, path: str, method: str, func: Callable[..., Any], scope: Any, source: Any) -> None:
        self.path = path
        self.method = method
        self.func = func
        self.scope = scope
        self.source = source
        self.takes_context = "context" in inspect.signature(func).parameters

    def __repr__(self) -> str:
        return f"HttpRoute({self.method.upper()} {self.path})"


async def serve_http(agent: Agent, route: HttpRoute, arguments: dict[str, Any], context: Context) -> Any:
    """Serve one call of ``route``: ``on_connection``, the agent's and the route's scope
    (PermissionDeniedError, 403), the handler with ``arguments`` (plus ``context`` when it
    takes one; a sync handler runs in a worker thread), and ``finalize_connection`` always.
    Returns the handler's return value."""
    async with agent.connection(context):
        context.require_scope(route.scope, f"{route.method.upper()} /{agent.name}{route.path} needs")
        if route.takes_context:
            arguments = {**arguments, "context": context}
        return await call_function(route.func, arguments)
