"""An agent's ``@http`` handlers, served under ``/{agent}{path}``.

One route of the app (:class:`AgentHttpRoutes`) serves the handlers of every agent: at each
request it looks the agent up by the path's first segment among the agents served *now*, so the
agents of a reloaded agents file (:mod:`robutler_server.reload`) and those a plugin's
``resolve_agent`` hook finds (:mod:`robutler_server.dynamic`) are served as the ones the server
started with, and an agent that a reload replaced is no longer called.

FastAPI reads the handler's signature as it reads any endpoint's: path parameters by name,
scalars from the query string, ``dict``/pydantic parameters from the JSON body, a parameter
annotated ``fastapi.Request`` gets the request. A parameter named ``context`` gets the
request's :class:`~robutler_core.Context` and is hidden from FastAPI.
"""

from __future__ import annotations

import inspect
import typing
import weakref
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, NoMatchFound

from robutler_core import Agent
from robutler_core.agent import HttpRoute
from robutler_core.errors import ConfigurationError, NotFoundError
from robutler_core.scopes import scope_admits

_REQUEST = "_robutler_request"
_MATCHED = "robutler.http_route"
"""Scope key: the agent's route :class:`AgentHttpRoutes` matched."""

_ROUTES = "_robutler_server_http_routes"
"""The attribute of an agent holding its FastAPI routes: they live and go with the agent (the
agents a ``resolve_agent`` hook finds come and go). Their endpoints refer to the agent and its
handler weakly, as FastAPI keeps the last 4,096 endpoints it classified."""


def mount_http_routes(app: FastAPI, agents: dict[str, Agent], find: Callable[[str], Agent | None]) -> AgentHttpRoutes:
    """Serve the ``@http`` handlers of the agents ``find(name)`` returns (``None``: no such
    agent now) with one route of ``app``, added here (so before the routes added after this
    call: an agent's own paths take precedence over the server's generic ``/{agent}/...``
    routes).

    The handlers of ``agents`` (those the server starts with) are checked now (raises
    ConfigurationError naming the agent and the handler whose type hints cannot be read) and
    documented in ``/openapi.json`` when everyone may call them (the agent's and the route's
    scope admit ``all``: the document is public and must not name an owner-only agent or route).
    """
    for agent in agents.values():
        public_agent = scope_admits(agent.scope, "all")
        for route in agent_routes(agent):
            route.include_in_schema = public_agent and scope_admits(route.http_route.scope, "all")
            app.router.routes.append(route)  # documented only: they never match (AgentHttpRoutes does)
    dispatcher = AgentHttpRoutes(find)
    app.router.routes.append(dispatcher)
    return dispatcher


def agent_routes(agent: Agent) -> list[_AgentRoute]:
    """The FastAPI routes of ``agent.http_routes`` (made once per agent). Raises
    ConfigurationError naming the agent and the handler when a handler's type hints cannot be
    read."""
    routes: list[_AgentRoute] | None = agent.__dict__.get(_ROUTES)
    if routes is None:
        routes = [_AgentRoute(agent, route) for route in agent.http_routes]
        setattr(agent, _ROUTES, routes)
    return routes


class AgentHttpRoutes(BaseRoute):
    """The route serving every agent's ``@http`` handlers (see the module): it matches a
    request whose path's first segment names an agent ``find`` returns and whose path and
    method one of that agent's handlers takes (a path with another method is a partial match:
    405 unless another route takes it)."""

    path = path_format = "/{agent}/{path:path}"
    """What it serves, for tools that list ``app.routes`` (it matches only the agents' paths)."""

    def __init__(self, find: Callable[[str], Agent | None]) -> None:
        self.find = find

    def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path: str = scope["path"]
        end = path.find("/", 1)
        if end < 0:
            return Match.NONE, {}
        agent = self.find(path[1:end])
        if agent is None or not agent.http_routes:
            return Match.NONE, {}
        partial: tuple[Match, dict[str, Any]] | None = None
        for route in agent_routes(agent):
            match, child_scope = APIRoute.matches(route, scope)
            if match is Match.FULL:
                return match, {**child_scope, _MATCHED: route}
            if match is Match.PARTIAL and partial is None:
                partial = match, {**child_scope, _MATCHED: route}
        return partial or (Match.NONE, {})

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await scope[_MATCHED].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)


class _AgentRoute(APIRoute):
    """One ``@http`` handler of one agent as a FastAPI route. It matches only through
    :class:`AgentHttpRoutes`, which finds the agent first; in ``app.routes`` it only documents
    the handler."""

    def __init__(self, agent: Agent, route: HttpRoute) -> None:
        super().__init__(
            f"/{agent.name}{route.path}",
            _endpoint(agent, route),
            methods=[route.method.upper()],
            name=f"{agent.name}:{route.method}:{route.path}",
            summary=(inspect.getdoc(route.func) or "").split("\n", 1)[0] or None,
        )
        self.http_route = route

    def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
        return Match.NONE, {}


def _endpoint(agent: Agent, route: HttpRoute) -> Any:
    try:
        hints = typing.get_type_hints(route.func)
    except Exception as exc:
        raise ConfigurationError(
            f"agent '{agent.name}': cannot read the type hints of @http handler "
            f"{route.func.__qualname__}: {exc}"
        ) from None
    parameters = []
    request_name = None
    for param in inspect.signature(route.func).parameters.values():
        if param.name == "context":
            continue
        annotation = hints.get(param.name, param.annotation)
        if annotation is Request:
            request_name = param.name
        parameters.append(param.replace(annotation=annotation))
    if request_name is None:
        parameters.append(inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request))
    parameters.sort(key=lambda p: p.kind)

    agent_ref, route_ref = weakref.ref(agent), weakref.ref(route)
    name = agent.name

    async def endpoint(**kwargs: Any) -> Any:
        request: Request = kwargs[request_name] if request_name else kwargs.pop(_REQUEST)
        served, handler = agent_ref(), route_ref()
        if served is None or handler is None:  # only through a route kept after its agent went
            raise NotFoundError(f"agent '{name}' does not exist on this server", code="agent_not_found")
        context = served.new_context([], None, False, headers=dict(request.headers))
        return await served.http_request(handler, kwargs, context)

    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = getattr(route.func, "__name__", "http_handler")
    return endpoint
