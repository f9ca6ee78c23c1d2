"""Closing agents that leave service (a reload, a cache eviction) once their requests end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from robutler_core import Agent, Context

logger = logging.getLogger("robutler_server")


class Retiring:
    """Counts each tracked agent's requests in flight (an ``on_connection`` hook first, a
    ``finalize_connection`` hook last); :meth:`retire` closes an agent at once when it serves
    nothing, else when its last request ends."""

    def __init__(self) -> None:
        self._in_flight: dict[int, int] = {}
        self._retired: dict[int, Agent] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def track(self, agent: Agent) -> None:
        agent.register_hook("on_connection", self._enter, priority=-1_000_000)
        agent.register_hook("finalize_connection", self._leave, priority=1_000_001)

    def retire(self, agent: Agent) -> None:
        if self._in_flight.get(id(agent), 0) == 0:
            self._close_soon(agent)
        else:
            self._retired[id(agent)] = agent

    def _enter(self, context: Context) -> None:
        key = id(context.agent)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def _leave(self, context: Context) -> None:
        key = id(context.agent)
        left = self._in_flight.get(key, 1) - 1
        if left > 0:
            self._in_flight[key] = left
            return
        self._in_flight.pop(key, None)
        retired = self._retired.pop(key, None)
        if retired is not None:
            self._close_soon(retired)

    def _close_soon(self, agent: Agent) -> None:
        task = asyncio.get_running_loop().create_task(close_agent(agent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close_all(self, *also: Agent) -> None:
        """Close the retired agents still serving and ``also`` now; wait for pending closes."""
        agents = {**self._retired, **{id(agent): agent for agent in also}}
        self._retired.clear()
        for agent in agents.values():
            await close_agent(agent)
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def close_agent(agent: Agent) -> None:
    """``agent.close()``; a failure is logged."""
    try:
        await agent.close()
    except Exception:
        logger.exception("closing agent '%s' failed", agent.name)
