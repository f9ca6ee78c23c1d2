"""The ``discovery`` skill: publish what this agent does, and find agents by what they do.

At start-up (``initialize``) the agent's ``intents`` are published on the platform under its
name (``POST /api/intents/create`` with the owner's key, replacing the agent's earlier ones),
each with the agent's URL: ``public_url`` (or ``$ROBUTLER_PUBLIC_URL``: the server's base URL,
where other agents reach this one) followed by ``/{agent name}``. A platform that cannot be
reached then is logged, and publishing is tried again at the next ``discover_agents`` call.

Tool ``discover_agents(query, limit=5)`` (``POST /api/discovery``) returns the best matching
agents (name, URL, similarity in [0, 1], their matching intents); the agents it returns are
remembered, so the ``nli`` skill can call them by name.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pydantic

from robutler_core import tool
from robutler_core.errors import RobutlerError

from .client import PlatformConfig, PlatformSkill

logger = logging.getLogger(__name__)

KNOWN_AGENTS = 1_000
"""Agents (name -> URL) remembered from discovery results at most."""


class Intent(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", defer_build=True)

    intent: str = pydantic.Field(min_length=1)
    description: str | None = None


class DiscoveryConfig(PlatformConfig):
    """``api_key``: the agent owner's key; publishing is the owner's."""

    intents: list[str | Intent] = pydantic.Field(default_factory=list)
    """What this agent does: strings, or ``{intent, description}``."""
    public_url: str | None = None
    """The server's base URL as other agents reach it (default ``$ROBUTLER_PUBLIC_URL``)."""


class DiscoverySkill(PlatformSkill):
    """Publishes the agent's intents and finds other agents (see the module docstring)."""

    config_model = DiscoveryConfig

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.known: dict[str, str] = {}
        self.published = False
        self._publishing = asyncio.Lock()

    @property
    def agent_url(self) -> str | None:
        """Where other agents reach this one: ``{public_url}/{agent name}``, or ``None``."""
        base = self.settings.public_url or os.environ.get("ROBUTLER_PUBLIC_URL")
        if not base or self.agent is None:
            return None
        return f"{base.rstrip('/')}/{self.agent.name}"

    async def initialize(self, agent: Any) -> None:
        await super().initialize(agent)
        try:
            await self.publish()
        except RobutlerError as exc:
            logger.warning("agent '%s': publishing its intents failed (%s); trying again later", agent.name, exc)

    async def publish(self) -> None:
        """Publish the configured intents under this agent's name (once)."""
        async with self._publishing:
            if self.published or not self.settings.intents or self.agent is None:
                self.published = True
                return
            intents = [
                {"agent_id": self.agent.name, "url": self.agent_url,
                 **(item.model_dump() if isinstance(item, Intent) else {"intent": item})}
                for item in self.settings.intents
            ]
            await self.platform().call(
                "POST", "/api/intents/create", json={"intents": intents, "replace": True},
                idempotency_key=None,
            )
            self.published = True

    def url_of(self, name: str) -> str | None:
        """The URL of an agent a discovery returned, or ``None``."""
        return self.known.get(name)

    @tool
    async def discover_agents(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Find agents that can do something for you, best first.

        Args:
            query: what you need done, in plain words ("convert currencies").
            limit: how many agents at most (1-20).
        """
        if not 1 <= limit <= 20:
            return [{"error": "limit must be between 1 and 20"}]
        if not self.published:
            try:
                await self.publish()
            except RobutlerError as exc:
                logger.warning("publishing intents failed again: %s", exc)
        found = await self.platform().call(
            "POST", "/api/discovery", json={"query": query, "limit": limit, "types": ["agents"]}
        )
        agents = found["results"].get("agents", [])
        for agent in agents:
            if agent.get("url"):
                if len(self.known) >= KNOWN_AGENTS:
                    self.known.pop(next(iter(self.known)))
                self.known[agent["name"]] = agent["url"]
        return [
            {"name": a["name"], "url": a.get("url"), "similarity": round(a["similarity"], 3), "intents": a["intents"]}
            for a in agents
        ]
