"""Readiness of the served agents: ``GET /live``, ``GET /ready`` and the start-up initialisation.

:class:`Readiness` initialises every agent once at start-up (:meth:`Agent.initialize`). An
agent whose skill fails is not ready: the failure is logged once (agent, skill, error), the
agent answers 503 (``agent_not_ready``, the reason in the message) instead of initialising
again per request, and a background task retries every ``retry_interval`` seconds until it
succeeds (logged once too). The other agents serve meanwhile.

``GET /live`` answers 200 ``{"status": "live"}`` while the process answers. ``GET /ready``
answers 200 ``{"status": "ready", "agents": {name: {"ready": true}}}`` when every agent is
initialised, else 503 with ``"status": "not_ready"`` and, for each agent that is not, ``{"ready":
false, "skill": "vectors", "error": "OSError: connection refused"}`` (``skill`` is ``null``
before start-up ends).

A skill that initialised can still report that something it needs is down: when its
:meth:`robutler_core.Skill.status` (asked with the ``owner`` scope) returns a dict with
``"ready": false``, ``/ready`` answers 503 naming the agent, the skill and the status's
``error`` (or ``"not ready"``). The agent keeps serving: the skill decides what works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from robutler_core import Agent
from robutler_core.errors import ServiceUnavailableError

logger = logging.getLogger("robutler_server")

DEFAULT_RETRY_INTERVAL = 10.0
"""Seconds between two initialisation attempts of an agent whose skill failed."""


@dataclass(frozen=True)
class Failure:
    """Why an agent is not ready: the failing skill's name (``None`` when unknown) and the
    error as ``Type: message``."""

    skill: str | None
    error: str


STARTING = Failure(None, "the server is starting")


class Readiness:
    """The start-up state of ``agents``; see the module's docstring."""

    def __init__(self, agents: list[Agent], retry_interval: float = DEFAULT_RETRY_INTERVAL) -> None:
        if retry_interval <= 0:
            raise ValueError(f"retry_interval must be > 0 seconds, got {retry_interval}")
        self.agents = agents
        self.retry_interval = retry_interval
        self.failures: dict[str, Failure] = {}
        self.started = False

    def check(self, agent: Agent) -> None:
        """Raise ServiceUnavailableError (503, code ``agent_not_ready``) naming the agent, the
        skill and the error when ``agent`` is not ready; nothing before the lifespan ran (an app
        served without one initialises at the first request, as before)."""
        failure = self.failures.get(agent.name)
        if failure is not None:
            skill = f"skill '{failure.skill}'" if failure.skill else "a skill"
            raise ServiceUnavailableError(
                f"agent '{agent.name}' is not ready: {skill} failed to initialise: {failure.error}",
                code="agent_not_ready",
            )

    def report(self) -> tuple[int, dict[str, Any]]:
        """The ``/ready`` answer: status code and JSON body."""
        agents: dict[str, Any] = {}
        for agent in self.agents:
            failure = (self.failures.get(agent.name) or _reported(agent)) if self.started else STARTING
            agents[agent.name] = (
                {"ready": True} if failure is None
                else {"ready": False, "skill": failure.skill, "error": failure.error}
            )
        ready = all(entry["ready"] for entry in agents.values()) and self.started
        return (200 if ready else 503), {"status": "ready" if ready else "not_ready", "agents": agents}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Initialise every agent (failures recorded and logged, never raised), retry the failed
        ones in the background while the body runs, then stop retrying."""
        for agent in self.agents:
            await self._initialize(agent, retry=False)
        self.started = True
        retrier = asyncio.create_task(self._retry()) if self.failures else None
        try:
            yield
        finally:
            if retrier is not None:
                retrier.cancel()
                await asyncio.gather(retrier, return_exceptions=True)

    async def _retry(self) -> None:
        while self.failures:
            await asyncio.sleep(self.retry_interval)
            for agent in self.agents:
                if agent.name in self.failures:
                    await self._initialize(agent, retry=True)

    async def _initialize(self, agent: Agent, *, retry: bool) -> None:
        try:
            await agent.initialize()
        except Exception as exc:
            failure = Failure(_failing_skill(agent, exc), f"{type(exc).__name__}: {exc}")
            if self.failures.get(agent.name) != failure:  # logged once, again only when it changes
                skill = f"skill '{failure.skill}'" if failure.skill else "a skill"
                logger.error(
                    "agent '%s' is not ready: %s failed to initialise: %s; retrying every %gs",
                    agent.name, skill, failure.error, self.retry_interval,
                )
                logger.debug("initialising agent '%s' failed", agent.name, exc_info=True)
            self.failures[agent.name] = failure
            return
        if self.failures.pop(agent.name, None) is not None and retry:
            logger.info("agent '%s' is ready: its skills initialised on a retry", agent.name)


def _reported(agent: Agent) -> Failure | None:
    """The first of the agent's skills whose ``status("owner")`` says ``"ready": false`` (or
    raises), as a Failure; ``None`` when none does."""
    for name, skill in agent.skills.items():
        try:
            status = skill.status("owner")
        except Exception as exc:
            return Failure(name, f"its status failed: {type(exc).__name__}: {exc}")
        if isinstance(status, dict) and status.get("ready") is False:
            return Failure(name, str(status.get("error") or "not ready"))
    return None


def _failing_skill(agent: Agent, exc: BaseException) -> str | None:
    """Which of the agent's skills raised ``exc``: its name among ``agent.skills``, else its class
    name (a fallback or handoff model), from the innermost traceback frame whose ``self`` is one of
    them; ``None`` when none is."""
    names = {id(skill): name for name, skill in agent.skills.items()}
    skills = {id(skill): skill for skill in agent.all_skills()}
    found = None
    frame = exc.__traceback__
    while frame is not None:
        owner = frame.tb_frame.f_locals.get("self")
        if id(owner) in skills:
            found = names.get(id(owner), type(owner).__name__)
        frame = frame.tb_next
    return found


def install_probes(app: FastAPI, readiness: Readiness) -> None:
    """Add ``GET /live`` and ``GET /ready`` to ``app``."""

    @app.get("/live", responses={200: {"description": "The process answers."}})
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get(
        "/ready",
        responses={
            200: {"description": "Every agent is initialised."},
            503: {"description": "An agent is not: each such agent with the failing skill and its error."},
        },
    )
    async def ready() -> JSONResponse:
        status, body = readiness.report()
        return JSONResponse(body, status_code=status)
