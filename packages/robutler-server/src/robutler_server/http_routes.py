"""Mount an agent's ``@http`` handlers on the app, under ``/{agent}{path}``.

FastAPI reads the handler's signature as it reads any endpoint's: path parameters by name,
scalars from the query string, ``dict``/pydantic parameters from the JSON body, a parameter
annotated ``fastapi.Request`` gets the request. A parameter named ``context`` gets the
request's :class:`~robutler_core.Context` and is hidden from FastAPI.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from fastapi import FastAPI, Request

from robutler_core import Agent
from robutler_core.agent import HttpRoute
from robutler_core.errors import ConfigurationError
from robutler_core.scopes import scope_admits

_REQUEST = "_robutler_request"


def mount_http_routes(app: FastAPI, agent: Agent) -> None:
    """Add a FastAPI route for each of ``agent.http_routes``.

    Only routes that everyone may call (the agent's and the route's scope admit ``all``) are
    in the OpenAPI document: ``/openapi.json`` is public, and must not name an owner-only
    agent or route to anyone who asks.
    """
    public_agent = scope_admits(agent.scope, "all")
    for route in agent.http_routes:
        app.add_api_route(
            f"/{agent.name}{route.path}",
            _endpoint(agent, route),
            methods=[route.method.upper()],
            name=f"{agent.name}:{route.method}:{route.path}",
            summary=(inspect.getdoc(route.func) or "").split("\n", 1)[0] or None,
            include_in_schema=public_agent and scope_admits(route.scope, "all"),
        )


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

    async def endpoint(**kwargs: Any) -> Any:
        request: Request = kwargs[request_name] if request_name else kwargs.pop(_REQUEST)
        context = agent.new_context([], None, False, headers=dict(request.headers))
        return await agent.http_request(route, kwargs, context)

    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = getattr(route.func, "__name__", "http_handler")
    return endpoint
