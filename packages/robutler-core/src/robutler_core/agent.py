"""The :class:`Agent`: skills, tools, hooks and prompts around one model, served per request."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from .context import Context, _current_context
from .decorators import DEFAULT_PRIORITY, PROMPT_MARKER
from .errors import ConfigurationError
from .lifecycle import LifecyclePluginManager, RuntimeHook
from .loop import ToolLoop
from .models import resolve_model
from .plugins import SkillRegistry, installed_skills
from .scopes import Scope, normalize_scope, scope_admits
from .skill import LLMSkill, Skill
from .tools import TOOL_MARKER, Tool

logger = logging.getLogger("robutler_core.agent")

AGENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_MAX_TURNS = 10


class Agent:
    """An AI agent: instructions, a model, and the skills that give it tools and hooks.

    Args:
        name: URL-safe name (letters, digits, ``.``, ``_``, ``-``; up to 64), used in routes.
        instructions: the system message.
        model: ``"provider/model"`` (resolved through the installed LLM skills by prefix),
            ``"test"`` for :class:`robutler_core.testing.TestModel`, or an LLMSkill instance.
            ``None`` uses the LLM skill among ``skills``.
        skills: skill instances by name.
        tools: extra server-side tools: functions, ``@tool``-decorated or not.
        scope: the agent's default scope for its direct tools.
        max_turns: model calls allowed per request before :class:`~robutler_core.errors.MaxTurnsExceeded`.
        registry: where skill names (dependencies, model prefixes) resolve; defaults to the
            installed plugins.

    Raises:
        ConfigurationError: bad name, unknown model prefix or skill, a misspelt hook event,
            two tools with one name, a missing or circular dependency.
    """

    def __init__(
        self,
        name: str,
        instructions: str = "",
        model: str | LLMSkill | None = None,
        skills: dict[str, Skill] | None = None,
        tools: list[Callable[..., Any]] | None = None,
        scope: Scope = "all",
        max_turns: int = DEFAULT_MAX_TURNS,
        registry: SkillRegistry | None = None,
    ) -> None:
        if not isinstance(name, str) or not AGENT_NAME_PATTERN.match(name):
            raise ConfigurationError(
                f"agent name {name!r} is not URL-safe: use letters, digits, '.', '_' or '-' "
                "(up to 64 characters, starting with a letter or digit)"
            )
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ConfigurationError(f"max_turns must be a positive integer, got {max_turns!r}")
        self.name = name
        self.instructions = instructions or ""
        self.scope = normalize_scope(scope)
        self.max_turns = max_turns
        self._registry = registry
        self._lock = threading.Lock()
        self._tools: dict[str, tuple[Tool, Any]] = {}
        self._prompts: list[tuple[int, int, frozenset[str] | None, Callable[..., Any], bool]] = []
        self._pm = LifecyclePluginManager()
        self._init_lock = asyncio.Lock()
        self._initialized = False

        self.skills: dict[str, Skill] = {}
        given = dict(skills or {})
        self.llm = self._resolve_llm(model, given)
        for skill_name, skill in self._with_dependencies(given).items():
            self._add_skill(skill_name, skill)
        for func in tools or []:
            self.register_tool(func, source=self)
        self._loop = ToolLoop(self)

    # -- construction -------------------------------------------------------------------------
    @property
    def registry(self) -> SkillRegistry:
        if self._registry is None:
            self._registry = installed_skills()
        return self._registry

    def _resolve_llm(self, model: str | LLMSkill | None, skills: dict[str, Skill]) -> LLMSkill | None:
        if model is None:
            llms = [s for s in skills.values() if isinstance(s, LLMSkill)]
            return llms[0] if llms else None
        llm = resolve_model(model, self.registry, configured=skills)
        for skill_name, skill in list(skills.items()):
            if isinstance(skill, LLMSkill) and type(skill) is type(llm):
                skills[skill_name] = llm  # the configured skill, now bound to the model
                return llm
        skills.setdefault("llm", llm)
        return llm

    def _with_dependencies(self, skills: dict[str, Skill]) -> dict[str, Skill]:
        resolved = dict(skills)

        def visit(skill_name: str, chain: tuple[str, ...]) -> None:
            for dependency in resolved[skill_name].dependencies:
                if dependency in chain:
                    cycle = " -> ".join((*chain, dependency))
                    raise ConfigurationError(f"circular skill dependency: {cycle}")
                if dependency not in resolved:
                    if dependency not in self.registry:
                        raise ConfigurationError(
                            f"skill dependency not installed: {' -> '.join((*chain, dependency))}"
                        )
                    resolved[dependency] = self.registry.create(dependency)
                visit(dependency, (*chain, dependency))

        for skill_name in list(resolved):
            visit(skill_name, (skill_name,))
        return resolved

    def _add_skill(self, skill_name: str, skill: Skill) -> None:
        if not isinstance(skill, Skill):
            raise ConfigurationError(
                f"skill '{skill_name}' of agent '{self.name}' is {type(skill).__name__}, not a Skill"
            )
        skill.agent = self
        self.skills[skill_name] = skill
        self._pm.add(skill, name=skill_name)
        for attribute, member in inspect.getmembers(type(skill)):
            if not callable(member):
                continue
            if hasattr(member, TOOL_MARKER):
                self.register_tool(getattr(skill, attribute), source=skill)
            if hasattr(member, PROMPT_MARKER):
                options = getattr(member, PROMPT_MARKER)
                scope = options["scope"] if options["scope"] is not None else None
                self._add_prompt(getattr(skill, attribute), options["priority"], scope, skill)

    # -- registration (also at run time) ----------------------------------------------------
    def register_tool(
        self, func: Callable[..., Any] | Tool, scope: Scope = None, source: Any = None
    ) -> Tool:
        """Add a server-side tool; offered to requests whose tool loop starts after this call.

        ``scope`` overrides the tool's own; otherwise the ``@tool`` scope, then the source
        skill's scope. Raises ConfigurationError when another tool has the same name.
        """
        built = func if isinstance(func, Tool) else Tool.from_function(func)
        if scope is not None:
            built.scope = normalize_scope(scope)
        elif getattr(func, TOOL_MARKER, {}).get("scope") is None and not isinstance(func, Tool):
            built.scope = getattr(source, "scope", None)
        with self._lock:
            existing = self._tools.get(built.name)
            if existing is not None and existing[0].func != built.func:
                raise ConfigurationError(
                    f"agent '{self.name}': tool '{built.name}' from {_source_name(source)} "
                    f"clashes with the one from {_source_name(existing[1])}"
                )
            tools = dict(self._tools)
            tools[built.name] = (built, source)
            self._tools = tools  # copy on write: requests iterate a stable snapshot
        return built

    def register_hook(
        self,
        event: str,
        handler: Callable[..., Any],
        priority: int = DEFAULT_PRIORITY,
        scope: Scope = None,
        source: Any = None,
    ) -> None:
        """Add a lifecycle hook; an unknown event raises ConfigurationError."""
        plugin = RuntimeHook(event, handler, priority, scope, source)
        name = f"{_source_name(source)}:{event}:{getattr(handler, '__name__', 'hook')}:{id(plugin)}"
        self._pm.add(plugin, name=name)

    def _add_prompt(
        self, func: Callable[..., Any], priority: int, scope: Scope, source: Any
    ) -> None:
        required = normalize_scope(scope) if scope is not None else getattr(source, "scope", None)
        with self._lock:
            takes_context = "context" in inspect.signature(func).parameters
            prompts = [*self._prompts, (priority, len(self._prompts), required, func, takes_context)]
            prompts.sort(key=lambda entry: entry[:2])
            self._prompts = prompts

    # -- views -------------------------------------------------------------------------------
    def tools_for_scope(self, auth_scope: str) -> list[Tool]:
        """Server-side tools a caller with ``auth_scope`` may see and run."""
        return [t for t, _ in self._tools.values() if scope_admits(t.scope, auth_scope)]

    async def system_prompt(self, context: Context) -> str:
        """Instructions plus the outputs of the ``@prompt`` methods the caller's scope admits."""
        parts = [self.instructions] if self.instructions else []
        for _priority, _seq, required, func, takes_context in self._prompts:
            if not scope_admits(required, context.auth_scope):
                continue
            try:
                text = func(context) if takes_context else func()
                if inspect.isawaitable(text):
                    text = await text
            except Exception:
                logger.exception("prompt %s of agent '%s' failed; left out", func, self.name)
                continue
            if text:
                parts.append(str(text))
        return "\n\n".join(parts)

    async def dispatch(self, event: str, context: Context, **payload: Any) -> Any:
        """Run an event's hooks (see :meth:`LifecyclePluginManager.dispatch`)."""
        return await self._pm.dispatch(event, context, **payload)

    def info(self) -> dict[str, Any]:
        """A JSON-ready description: name, instructions, model, skills, tools (scope "all")."""
        return {
            "name": self.name,
            "object": "agent",
            "instructions": self.instructions,
            "model": self.model_name,
            "skills": sorted(self.skills),
            "tools": [t.definition() for t in self.tools_for_scope("all")],
        }

    @property
    def model_name(self) -> str | None:
        """``provider/model`` of the agent's LLM skill when known."""
        if self.llm is None:
            return None
        prefixes = type(self.llm).model_prefixes
        model = self.llm.model
        if not prefixes:
            return model
        return f"{prefixes[0]}/{model}" if model else prefixes[0]

    # -- running -----------------------------------------------------------------------------
    async def _ensure_initialized(self) -> None:
        if self._initialized:
            return
        async with self._init_lock:
            if self._initialized:
                return
            for skill in list(self.skills.values()):
                await skill.initialize(self)
            self._initialized = True

    def new_context(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, stream: bool, **params: Any
    ) -> Context:
        """A Context for one request; ``params`` are OpenAI request parameters for the model."""
        return Context(
            agent=self, messages=[dict(m) for m in messages], stream=stream,
            tools=list(tools or []), params=params,
        )

    async def run(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        context: Context | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Answer ``messages`` (OpenAI chat format); returns a ``chat.completion`` dict.

        ``tools`` are the request's external tools (OpenAI ``tools`` entries): their calls are
        returned with ``finish_reason: "tool_calls"`` for the client to run. ``params`` are
        passed to the model (``temperature``, ``max_tokens``, ``tool_choice``...).
        Raises :mod:`robutler_core.errors` (guarding hooks, provider failures, max turns).
        """
        context = context or self.new_context(messages, tools, False, **params)
        token = _current_context.set(context)
        try:
            await self._ensure_initialized()
            return await self._loop.serve(context, emit=None)
        finally:
            _current_context.reset(token)

    async def run_streaming(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        context: Context | None = None,
        **params: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Answer ``messages`` as ``chat.completion.chunk`` dicts (an async iterator).

        The request runs in its own task; closing the iterator early (a client disconnect)
        cancels it, and the upstream model call with it; ``finalize_connection`` still runs
        once. An error is raised from the iterator where it happened. With
        ``stream_options={"include_usage": True}`` the last chunk carries ``usage``.
        """
        context = context or self.new_context(messages, tools, True, **params)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        finished = object()

        async def produce() -> None:
            _current_context.set(context)
            try:
                await self._ensure_initialized()
                await self._loop.serve(context, emit=queue.put_nowait)
            except Exception as exc:
                queue.put_nowait(_Failure(exc))
            else:
                queue.put_nowait(finished)

        task = asyncio.create_task(produce(), name=f"robutler:{self.name}:{context.request_id}")
        try:
            while True:
                item = await queue.get()
                if item is finished:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model_name!r}, skills={sorted(self.skills)})"


BaseAgent = Agent
"""Alias used by the design documents."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _source_name(source: Any) -> str:
    if source is None:
        return "the agent"
    if isinstance(source, Agent):
        return f"agent '{source.name}'"
    return f"skill {type(source).__name__}"
