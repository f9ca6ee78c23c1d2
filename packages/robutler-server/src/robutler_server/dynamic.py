"""Dynamic agents: agents the agents file does not declare, found by installed plugins.

A distribution implements the server hook ``resolve_agent(name)`` (:mod:`robutler_server.plugins`)
to serve agents kept elsewhere (a database, one per tenant)::

    from robutler_core import Agent, hookimpl

    @hookimpl
    async def resolve_agent(name):
        row = await fetch_agent_row(name)   # None when there is no such agent
        return Agent(name, row.instructions, model=row.model) if row else None

For a request to an agent name the server does not serve (``/{name}/chat/completions``,
``/{name}/responses``, ``/v1/...`` with ``model`` = the name, ``GET /{name}``), the hook
implementations are asked in turn (the last registered first, as pluggy orders them); the first
agent returned is served. A found agent is kept for ``agent_cache_ttl`` seconds, at most
``agent_cache_size`` of them (the least recently used leaves first); a name no plugin knows is
remembered as unknown for the same time. An agent that leaves the cache is closed once its
requests in flight have ended. Dynamic agents are served by the generic routes and are subject
to the server's limits (without a ``rate_limit`` or ``max_concurrent_requests`` of their own);
their ``@http`` handlers are served as the agents file's are (:mod:`robutler_server.http_routes`;
an agent whose handlers' type hints cannot be read is a wrong answer: 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from robutler_core import Agent
from robutler_core.errors import ConfigurationError, RobutlerError
from robutler_core.tools import await_me_maybe

from .errors import error_response
from .http_routes import agent_routes
from .plugins import with_server_specs
from .retiring import Retiring

logger = logging.getLogger("robutler_server")

_MODEL_PATHS = ("/v1/chat/completions", "/v1/responses")


class AgentDirectoryError(RobutlerError):
    """503: a ``resolve_agent`` hook failed (its directory is down); the request may be retried."""

    status_code = 503
    type = "service_unavailable"
    code = "agent_directory_unavailable"


class DynamicAgents:
    """The agents found through ``resolve_agent``, cached (see the module docstring); an
    async context manager for the app's lifetime, at whose end the cached agents close.

    ``prepare`` is called with each agent found before it serves (the server attaches its
    limits and instrumentation there).
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        ttl: float,
        size: int,
        reserved: Iterable[str] = (),
        prepare: Iterable[Callable[[Agent], Any]] = (),
    ) -> None:
        self.impls = list(reversed(with_server_specs(pm).hook.resolve_agent.get_hookimpls()))
        self.ttl = ttl
        self.size = size
        self.reserved = frozenset(reserved)
        self.prepare = list(prepare)
        self._cache: OrderedDict[str, tuple[Agent | None, float]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Agent | None]] = {}
        self.retiring = Retiring()

    def get(self, name: str) -> Agent | None:
        """The cached agent named ``name`` (``None``: none, or its time is up)."""
        entry = self._cache.get(name)
        if entry is None or entry[0] is None or entry[1] < time.monotonic():
            return None
        self._cache.move_to_end(name)
        return entry[0]

    async def resolve(self, name: str) -> Agent | None:
        """The agent named ``name`` from the cache or the hooks (one lookup at a time per name);
        ``None`` when no plugin has it. Raises AgentDirectoryError (503) when a hook raises or
        returns something other than an Agent of that name."""
        entry = self._cache.get(name)
        if entry is not None and entry[1] >= time.monotonic():
            self._cache.move_to_end(name)
            return entry[0]
        pending = self._pending.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Agent | None] = asyncio.get_running_loop().create_future()
        self._pending[name] = future
        try:
            agent = await self._lookup(name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else must
            raise
        else:
            future.set_result(agent)
        finally:
            del self._pending[name]
        self._remember(name, agent)
        return agent

    async def _lookup(self, name: str) -> Agent | None:
        for impl in self.impls:
            try:
                agent = await await_me_maybe(impl.function(name=name))
            except Exception as exc:
                logger.error("plugin '%s' failed to resolve agent '%s': %s: %s",
                             impl.plugin_name, name, type(exc).__name__, exc)
                raise AgentDirectoryError(f"agent '{name}' cannot be looked up now; retry later") from exc
            if agent is None:
                continue
            if not isinstance(agent, Agent) or agent.name != name:
                logger.error("plugin '%s' resolve_agent('%s') returned %r, not an Agent named '%s'",
                             impl.plugin_name, name, agent, name)
                raise AgentDirectoryError(f"agent '{name}' cannot be looked up now; retry later")
            try:
                agent_routes(agent)
            except ConfigurationError as exc:
                logger.error("plugin '%s' resolve_agent('%s') returned an agent that cannot be served: %s",
                             impl.plugin_name, name, exc.message)
                raise AgentDirectoryError(f"agent '{name}' cannot be looked up now; retry later") from None
            for prepare in self.prepare:
                prepare(agent)
            self.retiring.track(agent)
            logger.info("agent '%s' resolved by plugin '%s'", name, impl.plugin_name)
            return agent
        return None

    def _remember(self, name: str, agent: Agent | None) -> None:
        self._cache[name] = (agent, time.monotonic() + self.ttl)
        self._cache.move_to_end(name)
        while len(self._cache) > self.size:
            _, (evicted, _) = self._cache.popitem(last=False)
            if evicted is not None:
                self.retiring.retire(evicted)
        for key, (old, expires) in list(self._cache.items()):
            if expires < time.monotonic():  # expired ones go too (their names are asked again)
                del self._cache[key]
                if old is not None and old is not agent:
                    self.retiring.retire(old)

    async def __aenter__(self) -> DynamicAgents:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        """The app's lifetime ends: every cached agent is closed."""
        cached = [agent for agent, _ in self._cache.values() if agent is not None]
        self._cache.clear()
        await self.retiring.close_all(*cached)


class DynamicAgentMiddleware:
    """ASGI middleware: before routing, finds the dynamic agent a request names (the first
    path segment, or for ``POST /v1/chat/completions`` and ``/v1/responses`` the body's
    ``model``, read here and passed on unchanged), so that the routes find it cached."""

    def __init__(self, app: Any, dynamic: DynamicAgents, served: Mapping[str, Agent]) -> None:
        self.app = app
        self.dynamic = dynamic
        self.served = served

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        name = path.split("/", 2)[1] if path.count("/") >= 1 else ""
        if name == "v1":
            if scope["method"] == "POST" and path in _MODEL_PATHS:
                try:
                    body, receive = await _read_body(receive)
                except HTTPException as exc:  # the body limit (robutler_server.guards)
                    error = RobutlerError(str(exc.detail), status_code=exc.status_code)
                    error.type = "invalid_request_error"
                    await error_response(error)(scope, receive, send)
                    return
                name = _model_of(body)
            elif path.startswith("/v1/models/"):
                name = path[len("/v1/models/"):]
            else:
                name = ""
        if name and name not in self.served and name not in self.dynamic.reserved and self.dynamic.get(name) is None:
            try:
                await self.dynamic.resolve(name)
            except AgentDirectoryError as exc:
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_body(receive: Any) -> tuple[bytes, Any]:
    """The whole body, and a ``receive`` that gives it again (then what ``receive`` gives)."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _model_of(body: bytes) -> str:
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return ""
    return model if isinstance(model, str) else ""


def install_dynamic_agents(
    app: Any,
    pm: pluggy.PluginManager,
    served: Mapping[str, Agent],
    *,
    ttl: float,
    size: int,
    reserved: Iterable[str],
    prepare: Iterable[Callable[[Agent], Any]],
) -> DynamicAgents:
    """Serve the agents ``pm``'s ``resolve_agent`` hooks find (kept as ``app.state.dynamic_agents``);
    without such a hook nothing is installed and no request pays for it. Enter the returned
    :class:`DynamicAgents` with the app's lifespan."""
    dynamic = DynamicAgents(pm, ttl=ttl, size=size, reserved=reserved, prepare=prepare)
    if dynamic.impls:  # innermost, so that the body limit applies before it reads a body
        app.user_middleware.append(Middleware(DynamicAgentMiddleware, dynamic=dynamic, served=served))
    app.state.dynamic_agents = dynamic
    return dynamic
