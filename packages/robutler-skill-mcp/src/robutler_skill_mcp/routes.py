"""The ``/{agent}/mcp`` routes of ``robutler serve``, mounted without importing the MCP SDK.

``register_routes`` adds one route per agent at start-up; importing the SDK and building the
agent's MCP server (:mod:`robutler_skill_mcp.server`, 0.3-0.6 s) waits for the first request to
that route: the SDK is imported in a worker thread (the server keeps answering other requests
meanwhile), the agent's stateless session manager is started in a task of its own, and every
later request to the route goes straight to it. The session managers stop when the app's
lifespan ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robutler_core import Agent

logger = logging.getLogger("robutler_skill_mcp")

_NOT_RUNNING = "the MCP server is not running (the app's lifespan has not started)"


def mount_agents(app: Any, agents: Mapping[str, Agent]) -> Lifetime:
    """Add ``/{name}/mcp`` (GET, POST, DELETE) to ``app`` for each agent; returns the async
    context manager that the app's lifespan enters (robutler-server's ``register_routes``).
    While it is entered the routes serve (the SDK's session managers start at each agent's first
    request); outside it they answer 503. It may be entered again after an exit (an app whose
    lifespan runs more than once): each entry runs new session managers."""
    lifetime = Lifetime(agents)
    for name in agents:
        app.add_route(f"/{name}/mcp", _Endpoint(lifetime, name), methods=["GET", "POST", "DELETE"])
    return lifetime


class Lifetime:
    """The session managers of one app: none until a request needs one (see the module)."""

    def __init__(self, agents: Mapping[str, Agent]) -> None:
        self.agents = agents
        self._runs: list[_Run] = []

    async def manager(self, name: str) -> Any:
        """The running session manager of agent ``name`` (an SDK
        ``StreamableHTTPSessionManager``), started now if it is the first request; ``None``
        outside the app's lifespan. Raises what importing the SDK or starting the manager raised."""
        if not self._runs:
            return None
        return await self._runs[-1].manager(name, self.agents[name])

    async def __aenter__(self) -> None:
        self._runs.append(_Run())

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._runs.pop().stop()


class _Run:
    """One entry of a :class:`Lifetime`: a task per started session manager, each running it
    until :meth:`stop`."""

    def __init__(self) -> None:
        self._started: dict[str, asyncio.Future[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._context = contextvars.copy_context()  # the lifespan's, not the first request's

    async def manager(self, name: str, agent: Agent) -> Any:
        started = self._started.get(name)
        if started is None:
            started = self._started[name] = asyncio.get_running_loop().create_future()
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._serve(name, agent, started), name=f"mcp session manager {name}", context=self._context.copy(),
            ))
        try:
            # shielded: a request that goes away must not stop the manager the others wait for
            return await asyncio.shield(started)
        except Exception:
            if self._started.get(name) is started:
                del self._started[name]  # the next request tries again
            raise

    async def _serve(self, name: str, agent: Agent, started: asyncio.Future[Any]) -> None:
        try:
            server = await asyncio.to_thread(importlib.import_module, "robutler_skill_mcp.server")
            if self._stopping.is_set():
                raise RuntimeError(_NOT_RUNNING)
            manager = server.session_manager(agent)
            async with manager.run():
                started.set_result(manager)
                await self._stopping.wait()
        except Exception as exc:
            if started.done():
                logger.exception("the MCP session manager of agent '%s' failed", name)
            else:
                logger.error("cannot serve agent '%s' over MCP: %s: %s", name, type(exc).__name__, exc)
                started.set_exception(exc)
                started.exception()  # retrieved: the waiting requests report it
        except BaseException:  # cancelled (the loop is closing)
            if not started.done():
                started.set_exception(RuntimeError(_NOT_RUNNING))
                started.exception()
            raise

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _Endpoint:
    """The ASGI endpoint of ``/{name}/mcp``: the request's headers in a context variable (the
    SDK runs the handlers in tasks that inherit it), then the agent's session manager."""

    def __init__(self, lifetime: Lifetime, name: str) -> None:
        self.lifetime = lifetime
        self.name = name

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            manager = await self.lifetime.manager(self.name)
        except Exception as exc:
            await _unavailable(f"the MCP server of agent '{self.name}' cannot start: {type(exc).__name__}: {exc}",
                               scope, receive, send)
            return
        if manager is None:
            await _unavailable(_NOT_RUNNING, scope, receive, send)
            return
        from .server import handle_request  # imported by then

        await handle_request(manager, scope, receive, send)


async def _unavailable(message: str, scope: Any, receive: Any, send: Any) -> None:
    from starlette.responses import JSONResponse

    response = JSONResponse(
        {"error": {"message": message, "type": "service_unavailable", "param": None, "code": None}},
        status_code=503,
    )
    await response(scope, receive, send)
