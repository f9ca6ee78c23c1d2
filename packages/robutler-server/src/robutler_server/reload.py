"""Reloading the agents file while serving (``robutler serve --reload-agents``).

The file is re-read when it changes (``watchfiles``, which comes with ``uvicorn[standard]``,
watches its directory, so an editor's save-by-rename counts too) or when the process gets
SIGHUP. A new file is loaded and checked as at start-up (:func:`robutler_server.config.load_agents_file`),
its agents initialised, and only then do they replace the served ones, at once: a request
already running goes on with the agent it started with, which is closed when its last request
ends. A file that cannot be served (invalid YAML, an unknown skill, an agent that fails to
initialise) is refused with one ERROR log line per problem, and the agents loaded before keep
serving.

The new agents are served on every route the old ones were: the generic routes (chat
completions, Responses, info, models) and their ``@http`` handlers (:mod:`robutler_server.http_routes`
finds the agent at each request; a handler whose type hints cannot be read refuses the file).
Their per-agent settings apply (``rate_limit``, ``total_rate_limit``,
``max_concurrent_requests``, ``request_timeout``, ``tool_timeout``). The ``server:`` section
configures the process (its body limit, CORS, rate-limit storage, tool threads, keep-alives,
dynamic-agent cache): a reload that changes it serves the new agents, keeps the settings in
effect and logs one WARNING naming the settings that need a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from robutler_core import Agent, connect_agents
from robutler_core.errors import ConfigurationError
from robutler_core.plugins import SkillRegistry

from .config import AgentLimits, AgentsFileError, ServerConfig, load_agents_file, read_server_section
from .http_routes import agent_routes
from .retiring import Retiring, close_agent

logger = logging.getLogger("robutler_server")


class AgentsReloader:
    """Swaps ``served`` (the app's agents by name, changed in place) for the agents of
    ``path`` on change or SIGHUP; an async context manager for the app's lifetime.

    ``prepare`` is called with each new agent and its limits before it serves (the server
    attaches its limits and instrumentation); ``reserved`` are names no agent may take.
    ``also_update``: a list kept equal to the served agents (the server's readiness list,
    whose agents the server's lifespan closes at shutdown); without it the agents a reload
    made are closed at this context's exit.
    """

    def __init__(
        self,
        path: str | Path,
        served: dict[str, Agent],
        *,
        registry: SkillRegistry | None = None,
        prepare: Iterable[Callable[[Agent, AgentLimits], Any]] = (),
        reserved: Iterable[str] = (),
        also_update: list[Agent] | None = None,
    ) -> None:
        self.path = Path(path)
        self.served = served
        self.registry = registry
        self.prepare = list(prepare)
        self.reserved = frozenset(reserved)
        self.also_update = also_update
        self.reloads = 0
        self.retiring = Retiring()
        self._loaded: list[Agent] = []
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        for agent in served.values():
            self.retiring.track(agent)
        self.server_section = read_server_section(self.path)
        """The file's ``server:`` section in effect (read at start-up)."""

    async def reload(self) -> bool:
        """Load the file again and serve its agents; whether they replaced the served ones."""
        async with self._lock:
            try:
                loaded = await asyncio.to_thread(load_agents_file, self.path, self.registry)
                agents = {agent.name: agent for agent in loaded.agents}
                shadowing = sorted(self.reserved & agents.keys())
                if shadowing:
                    raise AgentsFileError([f"{self.path}: agent name '{shadowing[0]}' would shadow a server route"])
                for agent in agents.values():
                    try:
                        agent_routes(agent)
                    except ConfigurationError as exc:
                        raise AgentsFileError([f"{self.path}: {exc.message}"]) from None
            except AgentsFileError as exc:
                for problem in exc.problems:
                    logger.error("agents file refused, the agents loaded before keep serving: %s", problem)
                return False
            connect_agents(list(agents.values()))
            started: list[Agent] = []
            for agent in agents.values():
                try:
                    await agent.initialize()
                except Exception as exc:
                    logger.error("agents file refused, the agents loaded before keep serving: %s: agent '%s' "
                                 "failed to initialise: %s: %s", self.path, agent.name, type(exc).__name__, exc)
                    for other in [*started, agent]:
                        await close_agent(other)
                    return False
                started.append(agent)
            for agent in agents.values():
                for prepare in self.prepare:
                    prepare(agent, loaded.limits.get(agent.name, AgentLimits()))
                self.retiring.track(agent)
            old = list(self.served.values())
            self.served.clear()
            self.served.update(agents)
            if self.also_update is not None:
                self.also_update[:] = list(agents.values())
            self._loaded = list(agents.values())
            for agent in old:
                self.retiring.retire(agent)
            self.reloads += 1
            logger.info("agents file %s reloaded: serving %s", self.path, ", ".join(agents) or "no agent")
            self._check_server_section(loaded.server)
            return True

    def _check_server_section(self, server: ServerConfig) -> None:
        """Log a WARNING naming the ``server:`` settings that differ from those in effect."""
        if self.server_section is None:
            return
        changed = [name for name in type(server).model_fields
                   if getattr(server, name) != getattr(self.server_section, name)]
        if changed:
            logger.warning(
                "agents file %s: server settings changed (%s); they apply at the next restart, the settings "
                "in effect stay", self.path, ", ".join(changed),
            )

    async def _watch(self) -> None:
        from watchfiles import awatch

        name = self.path.resolve().name
        async for _changes in awatch(
            self.path.resolve().parent, watch_filter=lambda _change, changed: Path(changed).name == name,
            stop_event=self._stop, debounce=200, step=50, recursive=False,
        ):
            await self.reload()

    def _on_sighup(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self.reload()))

    async def __aenter__(self) -> AgentsReloader:
        self._stop.clear()
        self._tasks.append(asyncio.get_running_loop().create_task(self._watch()))
        with contextlib.suppress(ValueError, RuntimeError, AttributeError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._stop.set()
        with contextlib.suppress(ValueError, RuntimeError, AttributeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        # Retired agents still serving; and the agents a reload made, unless the server closes them.
        await self.retiring.close_all(*(self._loaded if self.also_update is None else []))

