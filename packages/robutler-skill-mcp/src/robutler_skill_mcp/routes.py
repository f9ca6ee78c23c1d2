"""The ``/{agent}/mcp`` route of ``robutler serve``, mounted without importing the MCP SDK.

``register_routes`` adds one route, ``/{agent}/mcp``, that finds the agent in robutler-server's
live view of the served agents at each request: the agents the server started with, those of a
reloaded agents file (a replaced agent's MCP server is replaced too) and those a plugin's
``resolve_agent`` hook finds. Importing the SDK and building the agent's MCP server
(:mod:`robutler_skill_mcp.server`, 0.3-0.6 s the first time) waits for the first request to the
agent's route: the SDK is imported in a worker thread (the server keeps answering other
requests meanwhile), the agent's stateless session manager is started in a task of its own, and
the later requests go straight to it. A session manager stops when the app's lifespan ends, or
once its last request has ended after its agent left service (a reload, the dynamic-agent
cache).
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
    """Add ``/{agent_name}/mcp`` (GET, POST, DELETE) to ``app``, serving the agent that
    ``agents`` (name -> agent, read at each request) holds under that name, 404 for a name it
    does not; returns the async context manager that the app's lifespan enters
    (robutler-server's ``register_routes``). While it is entered the route serves (a session
    manager starts at its agent's first request); outside it the route answers 503. It may be
    entered again after an exit (an app whose lifespan runs more than once): each entry runs
    new session managers."""
    lifetime = Lifetime(agents)
    app.add_route("/{agent_name}/mcp", lifetime, methods=["GET", "POST", "DELETE"])
    return lifetime


class Lifetime:
    """The session managers of one app: none until a request needs one (see the module); the
    ASGI endpoint of ``/{agent_name}/mcp``."""

    def __init__(self, agents: Mapping[str, Agent]) -> None:
        self.agents = agents
        self._runs: list[_Run] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        name = scope["path_params"]["agent_name"]
        agent = self.agents.get(name)
        if agent is None:
            await _error(404, f"agent '{name}' does not exist on this server", "not_found_error",
                         "agent_not_found", scope, receive, send)
            return
        if not self._runs:
            await _error(503, _NOT_RUNNING, "service_unavailable", None, scope, receive, send)
            return
        await self._runs[-1].serve(name, agent, self.agents, scope, receive, send)

    async def __aenter__(self) -> None:
        self._runs.append(_Run())

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._runs.pop().stop()


class _Manager:
    """One agent's session manager: started (``ready``), the requests it serves now, and
    whether it is to stop once they have ended (its agent left service)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.stopping = asyncio.Event()
        self.in_flight = 0
        self.retired = False

    def retire(self) -> None:
        self.retired = True
        if self.in_flight == 0:
            self.stopping.set()


class _Run:
    """One entry of a :class:`Lifetime`: a task per started session manager, each running it
    until it retires or :meth:`stop`."""

    def __init__(self) -> None:
        self._managers: dict[str, _Manager] = {}
        self._tasks: list[tuple[asyncio.Task[None], _Manager]] = []
        self._stopped = False
        self._context = contextvars.copy_context()  # the lifespan's, not the first request's

    async def serve(self, name: str, agent: Agent, agents: Mapping[str, Agent], scope: Any, receive: Any,
                    send: Any) -> None:
        entry = self._managers.get(name)
        if entry is None or entry.agent is not agent:
            entry = self._start(name, agent, agents)
        entry.in_flight += 1
        try:
            try:
                # shielded: a request that goes away must not stop the start the others wait for
                manager = await asyncio.shield(entry.ready)
            except Exception as exc:
                if self._managers.get(name) is entry:
                    del self._managers[name]  # the next request tries again
                await _error(503, f"the MCP server of agent '{name}' cannot start: {type(exc).__name__}: {exc}",
                             "service_unavailable", None, scope, receive, send)
                return
            from .server import handle_request  # imported by now

            await handle_request(manager, scope, receive, send)
        finally:
            entry.in_flight -= 1
            if entry.retired and entry.in_flight == 0:
                entry.stopping.set()

    def _start(self, name: str, agent: Agent, agents: Mapping[str, Agent]) -> _Manager:
        """A session manager for ``agent``, starting; those of agents no longer served (a
        replaced one of the same name among them) retire."""
        for other_name, other in list(self._managers.items()):
            if other_name == name or agents.get(other_name) is not other.agent:
                del self._managers[other_name]
                other.retire()
        entry = self._managers[name] = _Manager(agent)
        self._tasks = [(task, running) for task, running in self._tasks if not task.done()]
        task = asyncio.get_running_loop().create_task(
            self._run(name, entry), name=f"mcp session manager {name}", context=self._context.copy(),
        )
        self._tasks.append((task, entry))
        return entry

    async def _run(self, name: str, entry: _Manager) -> None:
        ready = entry.ready
        try:
            server = await asyncio.to_thread(importlib.import_module, "robutler_skill_mcp.server")
            if self._stopped:
                raise RuntimeError(_NOT_RUNNING)
            manager = server.session_manager(entry.agent)
            async with manager.run():
                ready.set_result(manager)
                await entry.stopping.wait()
        except Exception as exc:
            if ready.done():
                logger.exception("the MCP session manager of agent '%s' failed", name)
            else:
                logger.error("cannot serve agent '%s' over MCP: %s: %s", name, type(exc).__name__, exc)
                ready.set_exception(exc)
                ready.exception()  # retrieved: the waiting requests report it
        except BaseException:  # cancelled (the loop is closing)
            if not ready.done():
                ready.set_exception(RuntimeError(_NOT_RUNNING))
                ready.exception()
            raise

    async def stop(self) -> None:
        self._stopped = True
        self._managers.clear()
        for _, entry in self._tasks:  # retired ones still serving too: the server has waited for its requests
            entry.stopping.set()
        await asyncio.gather(*(task for task, _ in self._tasks), return_exceptions=True)


async def _error(status: int, message: str, kind: str, code: str | None, scope: Any, receive: Any, send: Any) -> None:
    """An error in OpenAI's envelope, as robutler-server answers."""
    from starlette.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    await JSONResponse(body, status_code=status)(scope, receive, send)
