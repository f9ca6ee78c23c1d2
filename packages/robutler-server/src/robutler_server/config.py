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
        unsupported_params: error           # optional: or ignore (drop request parameters the model cannot honour)
        skills:                             # skill name (as registered) -> its config
          weather: {units: metric}
          litellm: {api_base: http://localhost:4000/v1}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from robutler_core import Agent, Skill, handoff
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
    unsupported_params: Literal["error", "ignore"] = "error"
    skills: dict[str, dict[str, Any] | None] = Field(default_factory=dict)


class AgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: list[Any] = Field(min_length=1)


class AgentsFileError(ConfigurationError):
    """An agents file that cannot be served. ``problems``: one line per problem, each naming
    the file and, where one is at fault, the agent (``agents.yaml: agent 'weather': skill
    'weather': ...``); the message is those lines joined by newlines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load_agents(path: str | Path, registry: SkillRegistry | None = None) -> list[Agent]:
    """Agents from a YAML agents file, each checked as far as it can be without a request.

    Every agent is validated: its fields, each skill's options (a skill whose ``__init__``
    raises is a problem too), its model and fallbacks resolvable,
    :meth:`Agent.check_configuration` (a provider's API key present...), and its handoffs to
    agents naming agents of the file.

    Raises:
        AgentsFileError: listing every problem of every agent, one line each (not only the
            first), naming the file and the agent.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise AgentsFileError([f"cannot read agents file {path}: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise AgentsFileError([f"agents file {path} is not valid YAML: {' '.join(str(exc).split())}"]) from None
    try:
        parsed = AgentsFile.model_validate(data)
    except ValidationError as exc:
        raise AgentsFileError([f"{path}: {_problem(e)}" for e in exc.errors()]) from None
    registry = registry or installed_skills()
    agents: list[Agent] = []
    problems: list[str] = []
    for index, entry in enumerate(parsed.agents):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{path}: agent '{name}'" if isinstance(name, str) else f"{path}: agents.{index}"
        try:
            config = AgentConfig.model_validate(entry)
        except ValidationError as exc:
            problems.extend(f"{where}: {_problem(e)}" for e in exc.errors())
            continue
        try:
            agent = build_agent(config, registry, source=str(path))
        except AgentsFileError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(f"{path}: {line}" for line in agent.check_configuration())
        agents.append(agent)
    declared = {entry.get("name") for entry in parsed.agents if isinstance(entry, dict)}
    for agent in agents:
        for item in agent.handoffs_for_scope("admin"):
            target = getattr(item, "agent_target", None)
            if isinstance(target, str) and target not in declared:
                problems.append(
                    f"{path}: agent '{agent.name}': handoff '{item.name}' names the agent "
                    f"'{target}', which this file does not declare"
                )
    if problems:
        raise AgentsFileError(problems)
    return agents


def build_agent(config: AgentConfig, registry: SkillRegistry, source: str = "config") -> Agent:
    """An Agent from its declaration, creating its skills through the registry by name.

    Raises AgentsFileError with one line per problem (each skill that cannot be created, then
    the agent itself), each starting ``{source}: agent '{name}'``.
    """
    where = f"{source}: agent '{config.name}'"
    skills: dict[str, Skill] = {}
    problems: list[str] = []
    for name, options in config.skills.items():
        try:
            registry.get(name)
        except ConfigurationError as exc:  # no such skill: the message names it
            problems.append(f"{where}: {exc.message}")
            continue
        try:
            skills[name] = registry.create(name, options or {})
        except ConfigurationError as exc:
            problems.append(f"{where}: skill '{name}': {exc.message}")
        except Exception as exc:  # a skill's own __init__ failing: reported like a bad option
            problems.append(f"{where}: skill '{name}': {type(exc).__name__}: {exc}")
    if problems:
        raise AgentsFileError(problems)
    try:
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
            unsupported_params=config.unsupported_params,
        )
    except ConfigurationError as exc:
        raise AgentsFileError([f"{where}: {exc.message}"]) from None


def _problem(error: Any) -> str:
    """One pydantic error as ``field.path: message``."""
    location = ".".join(str(part) for part in error.get("loc", ()))
    return f"{location}: {error['msg']}" if location else str(error["msg"])
