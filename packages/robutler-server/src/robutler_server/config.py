"""Agents files: agents declared in YAML.

::

    agents:
      - name: weather
        instructions: You answer questions about the weather.
        model: litellm/openai/gpt-4o-mini   # or test, openai/..., anthropic/...
        max_turns: 10                       # optional
        fallbacks: [anthropic/claude-sonnet-4-6]  # optional: tried after a 429/5xx/timeout
        scopes: [all]                       # optional: who may use the agent
        handoffs: [billing, openai/gpt-4o]  # optional: agents of this file, or models
        skills:                             # skill name (as registered) -> its config
          weather: {units: metric}
          litellm: {api_base: http://localhost:4000/v1}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from robutler_core import Agent, handoff
from robutler_core.errors import ConfigurationError
from robutler_core.plugins import SkillRegistry, installed_skills


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    instructions: str = ""
    model: str | None = None
    max_turns: int = Field(default=10, ge=1)
    fallbacks: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=lambda: ["all"])
    handoffs: list[str] = Field(default_factory=list)
    skills: dict[str, dict[str, Any] | None] = Field(default_factory=dict)


class AgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: list[AgentConfig] = Field(min_length=1)


def load_agents(path: str | Path, registry: SkillRegistry | None = None) -> list[Agent]:
    """Agents from a YAML agents file; raises ConfigurationError naming the file and field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read agents file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"agents file {path} is not valid YAML: {exc}") from None
    try:
        parsed = AgentsFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"agents file {path}: {problems}") from None
    return [build_agent(config, registry or installed_skills(), source=str(path)) for config in parsed.agents]


def build_agent(config: AgentConfig, registry: SkillRegistry, source: str = "config") -> Agent:
    """An Agent from its declaration, creating its skills through the registry by name."""
    try:
        skills = {name: registry.create(name, options or {}) for name, options in config.skills.items()}
        return Agent(
            config.name,
            config.instructions,
            model=config.model,
            skills=skills,
            max_turns=config.max_turns,
            registry=registry,
            fallbacks=list(config.fallbacks),
            scopes=list(config.scopes),
            handoffs=[handoff(target) for target in config.handoffs],
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: agent '{config.name}': {exc.message}") from None
