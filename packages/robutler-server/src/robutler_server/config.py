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
        rate_limit: 60/minute               # optional: requests per caller ("limits" notation; ";" joins several)
        total_rate_limit: 1000/minute       # optional: requests of all callers together
        request_timeout: 600                # optional: seconds per request (default 600)
        tool_timeout: 60                    # optional: seconds per tool call without its own timeout (default 60)
        max_concurrent_requests: 20         # optional: beyond it 503 with Retry-After
        skills:                             # skill name (as registered) -> its config
          weather: {units: metric}
          litellm: {api_base: http://localhost:4000/v1}
    server:                                 # optional: the server's own settings (ServerConfig)
      cors_origins: [https://app.example.com]
      max_body_bytes: 4194304
      rate_limit_storage: redis://localhost:6379   # default memory:// (one process)
      sse_ping: 15
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from robutler_core import Agent, Skill, handoff
from robutler_core.agent import DEFAULT_REQUEST_TIMEOUT, DEFAULT_TOOL_TIMEOUT
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
    rate_limit: str | None = None
    total_rate_limit: str | None = None
    request_timeout: float = Field(default=DEFAULT_REQUEST_TIMEOUT, gt=0)
    tool_timeout: float = Field(default=DEFAULT_TOOL_TIMEOUT, gt=0)
    max_concurrent_requests: int | None = Field(default=None, ge=1)

    @field_validator("rate_limit", "total_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        return check_rate_limit(value)

    def limits(self) -> AgentLimits:
        """The server-side limits this declaration sets."""
        return AgentLimits(
            rate_limit=self.rate_limit, total_rate_limit=self.total_rate_limit,
            max_concurrent_requests=self.max_concurrent_requests,
        )


class AgentLimits(BaseModel):
    """What the server limits for one agent (robutler-server enforces these; the agent's own
    ``request_timeout`` and ``tool_timeout`` are :class:`robutler_core.Agent` options).

    ``rate_limit``: requests each caller may make to the agent, in the ``limits`` library's
    notation (``"60/minute"``, ``"10/second;1000/day"``); a caller is the ``peer_user_id`` an
    auth hook set, else the client's address. ``total_rate_limit``: the agent's requests from
    all callers together, in the same notation. ``max_concurrent_requests``: requests of the
    agent in flight at once, beyond which the server answers 503 with ``Retry-After``.
    """

    model_config = ConfigDict(extra="forbid")

    rate_limit: str | None = None
    total_rate_limit: str | None = None
    max_concurrent_requests: int | None = Field(default=None, ge=1)

    @field_validator("rate_limit", "total_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        return check_rate_limit(value)


MIB = 1024 * 1024


class ServerConfig(BaseModel):
    """The ``server:`` section of an agents file; ``robutler serve`` options override it.

    Sizes are bytes, durations seconds. ``sse_ping: 0`` turns keep-alives off.
    """

    model_config = ConfigDict(extra="forbid")

    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * MIB, ge=1)
    max_messages: int = Field(default=2048, ge=1)
    max_tools: int = Field(default=128, ge=0)
    rate_limit_storage: str = "memory://"
    sse_ping: float = Field(default=15.0, ge=0)
    tool_threads: int = Field(default=32, ge=1)
    agent_cache_ttl: float = Field(default=300.0, gt=0)
    agent_cache_size: int = Field(default=1000, ge=1)

    def with_options(self, *, cors_origins: tuple[str, ...] | list[str] = (), **options: Any) -> ServerConfig:
        """These settings with command-line ``options`` (``None``: not given) over them;
        ``cors_origins`` are added to the file's. Raises ValidationError for a bad value."""
        given = {name: value for name, value in options.items() if value is not None}
        origins = list(dict.fromkeys([*self.cors_origins, *cors_origins]))
        return ServerConfig.model_validate({**self.model_dump(), **given, "cors_origins": origins})


class AgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: list[Any] = Field(min_length=1)
    server: ServerConfig = Field(default_factory=ServerConfig)


class LoadedAgents(NamedTuple):
    """What an agents file declares: the agents, each one's server-side limits by name, and
    the server's settings."""

    agents: list[Agent]
    limits: dict[str, AgentLimits]
    server: ServerConfig


def check_rate_limit(value: str | None) -> str | None:
    """``value`` when the ``limits`` library parses it (``"60/minute"``); ValueError otherwise."""
    if value is None:
        return None
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(
            f"'{value}' is not a rate limit; write it as '60/minute' or '10/second;1000/day'"
        ) from None
    return value


class AgentsFileError(ConfigurationError):
    """An agents file that cannot be served. ``problems``: one line per problem, each naming
    the file and, where one is at fault, the agent (``agents.yaml: agent 'weather': skill
    'weather': ...``); the message is those lines joined by newlines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load_agents(path: str | Path, registry: SkillRegistry | None = None) -> list[Agent]:
    """The agents of a YAML agents file (:func:`load_agents_file` without the server settings)."""
    return load_agents_file(path, registry).agents


def load_agents_file(path: str | Path, registry: SkillRegistry | None = None) -> LoadedAgents:
    """Agents from a YAML agents file, each checked as far as it can be without a request,
    with their server-side limits and the file's ``server:`` section.

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
        data = parse_yaml(path.read_text())
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
    limits: dict[str, AgentLimits] = {}
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
        limits[agent.name] = config.limits()
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
    return LoadedAgents(agents, limits, parsed.server)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, with libyaml's parser when PyYAML has it (about 10x faster);
    a document it refuses is parsed again by the pure-Python one, whose YAMLError shows the
    offending line with a caret."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def read_server_section(path: str | Path) -> ServerConfig | None:
    """The ``server:`` section of the agents file at ``path`` (defaults when it has none);
    ``None`` when the file cannot be read or its section is invalid (:func:`load_agents_file`
    reports why)."""
    try:
        data = parse_yaml(Path(path).read_text())
        section = data.get("server") if isinstance(data, dict) else None
        return ServerConfig.model_validate(section or {})
    except (OSError, yaml.YAMLError, ValidationError):
        return None


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
            request_timeout=config.request_timeout,
            tool_timeout=config.tool_timeout,
        )
    except ConfigurationError as exc:
        raise AgentsFileError([f"{where}: {exc.message}"]) from None


def _problem(error: Any) -> str:
    """One pydantic error as ``field.path: message``."""
    location = ".".join(str(part) for part in error.get("loc", ()))
    return f"{location}: {error['msg']}" if location else str(error["msg"])
