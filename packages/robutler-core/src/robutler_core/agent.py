"""The :class:`Agent`: skills, tools, hooks and prompts around one model, served per request."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, Literal

from .context import Context, _current_context
from .http_routes import HttpRoute, serve_http
from .decorators import DEFAULT_PRIORITY, HTTP_MARKER, PROMPT_MARKER, definition_order
from .errors import ConfigurationError, RobutlerError
from .handoffs import HANDOFF_MARKER, FunctionHandoff, Handoff, LLMHandoff
from .lifecycle import LifecyclePluginManager, RuntimeHook
from .loop import ToolLoop, wait_cancelled
from .models import resolve_model
from .plugins import SkillRegistry, installed_skills
from .scopes import Scope, normalize_scope, scope_admits
from .skill import LLMSkill, Skill
from .tools import TOOL_MARKER, Tool, ToolCallResult, await_me_maybe, tool_result_text
from .wire import new_tool_call_id

logger = logging.getLogger("robutler_core.agent")

AGENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_MAX_TURNS = 10
DEFAULT_REQUEST_TIMEOUT = 600.0
"""Seconds a request may take, model calls and tools included (``request_timeout``)."""
DEFAULT_TOOL_TIMEOUT = 60.0
"""Seconds a server-side tool call may take when its ``@tool`` sets no ``timeout``."""
_HOOK_OPTIONS = frozenset({"handler", "priority", "scope"})
_OWNER = frozenset({"owner"})


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
        hooks: extra lifecycle hooks, ``{event: [handler, ...]}``; an entry may be a dict
            ``{"handler": f, "priority": 10, "scope": "owner"}``. They are ordered with the
            skills' hooks by priority.
        handoffs: handoffs offered to the model: :func:`~robutler_core.handoff` objects or
            ``@handoff`` functions.
        scope: who may use the agent at all (agent-level scope; ``scopes`` is an alias that
            takes a list). A caller whose ``auth_scope`` (as set by the ``on_connection``
            hooks) it does not admit gets 403 before the model is called.
        max_turns: model calls allowed per request before :class:`~robutler_core.errors.MaxTurnsExceeded`.
        fallbacks: models (``"provider/model"`` or LLMSkill instances) tried in order when the
            model fails with a retryable error (429, 5xx, timeout); the LLM skill's own
            ``config["fallbacks"]`` come after these. Which model answered is in
            ``context.answered_by`` and the usage records.
        unsupported_params: what a request parameter (``context.params``) that the answering
            LLM skill's ``supported_params`` lacks gets: ``"error"`` (the default) a
            BadRequestError (400, ``param`` = its name, code ``unsupported_parameter``) before
            any model call, checked against every model of the chain (the model and its
            fallbacks); ``"ignore"``: it is left out of that model's call. The loop's own keys
            (``stream``, ``stream_options``, ``model``, ``messages``, ``tools``) are not checked.
        registry: where skill names (dependencies, model prefixes) resolve; defaults to the
            installed plugins.
        request_timeout: seconds a request may take from its first model call to its answer
            (``on_connection`` and ``finalize_connection`` excluded); past it the request ends
            with UpstreamTimeoutError (504, code ``request_timeout``), mid-stream too.
        tool_timeout: seconds a server-side tool call may take when its ``@tool(timeout=...)``
            sets none; past it the call is cancelled and the model gets
            ``Error: tool 'name' timed out after N s`` as its result.
        tool_executor: where synchronous tools run (a ``concurrent.futures.Executor``; the
            server gives its agents one bounded pool); ``None``: ``asyncio.to_thread`` (the
            event loop's default executor).

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
        *,
        hooks: dict[str, Any] | None = None,
        handoffs: list[Any] | None = None,
        scopes: list[str] | None = None,
        fallbacks: list[str | LLMSkill] | None = None,
        unsupported_params: Literal["error", "ignore"] = "error",
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        tool_timeout: float = DEFAULT_TOOL_TIMEOUT,
        tool_executor: Executor | None = None,
    ) -> None:
        if not isinstance(name, str) or not AGENT_NAME_PATTERN.match(name):
            raise ConfigurationError(
                f"agent name {name!r} is not URL-safe: use letters, digits, '.', '_' or '-' "
                "(up to 64 characters, starting with a letter or digit)"
            )
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ConfigurationError(f"max_turns must be a positive integer, got {max_turns!r}")
        if unsupported_params not in ("error", "ignore"):
            raise ConfigurationError(
                f"unsupported_params must be 'error' or 'ignore', got {unsupported_params!r}"
            )
        for option, value in (("request_timeout", request_timeout), ("tool_timeout", tool_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{option} must be a positive number of seconds, got {value!r}")
        if scopes is not None and scope != "all":
            raise ConfigurationError("give the agent's scope as scope= or scopes=, not both")
        self.name = name
        self.instructions = instructions or ""
        self.scope = normalize_scope(scopes if scopes is not None else scope)
        self.max_turns = max_turns
        self.request_timeout = float(request_timeout)
        self.tool_timeout = float(tool_timeout)
        self.tool_executor = tool_executor
        self.unsupported_params = unsupported_params
        self.directory: dict[str, Agent] | None = None
        self.http_routes: list[HttpRoute] = []
        self._registry = registry
        self._lock = threading.Lock()
        self._tools: dict[str, tuple[Tool | Handoff, Any]] = {}
        # (priority, sequence, scope, function, takes context, skip on error), sorted
        self._prompts: list[tuple[int, int, frozenset[str] | None, Callable[..., Any], bool, bool]] = []
        self._pm = LifecyclePluginManager()
        self._init_lock = asyncio.Lock()
        self._initialized: dict[int, Skill] = {}  # id -> skill, the ones initialize() set up
        self._ready = False  # every skill of all_skills() initialised (reset by additions, close)

        self.skills: dict[str, Skill] = {}
        try:
            self._build(dict(skills or {}), model, fallbacks, tools, handoffs, hooks)
        except BaseException:
            for skill in self.skills.values():  # a failed construction leaves its skills free
                if skill.agent is self:
                    skill.agent = None
            raise
        self._loop = ToolLoop(self)

    def _build(
        self, given: dict[str, Skill], model: str | LLMSkill | None, fallbacks: list[str | LLMSkill] | None,
        tools: list[Callable[..., Any]] | None, handoffs: list[Any] | None, hooks: dict[str, Any] | None,
    ) -> None:
        name = self.name
        self.llm = self._resolve_llm(model, given)
        self.fallbacks: list[LLMSkill] = [
            resolve_model(m, self.registry, configured=given)
            for m in [*(fallbacks or []), *(self.llm.fallbacks if self.llm else [])]
        ]
        if self.fallbacks and self.llm is None:
            raise ConfigurationError(f"agent '{name}' has fallbacks but no model")
        for skill_name, skill in self._with_dependencies(given).items():
            self._add_skill(skill_name, skill)
        for func in tools or []:
            self.register_tool(func, source=self)
        for entry in handoffs or []:
            self.register_handoff(entry, source=self)
        for event, handlers in (hooks or {}).items():
            self._add_hooks(event, handlers)

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
        if skill.agent is not None and skill.agent is not self:
            raise ConfigurationError(
                f"skill '{skill_name}' ({type(skill).__name__}) of agent '{self.name}' is already part "
                f"of agent '{skill.agent.name}': give each agent its own instance (a skill holds its "
                "agent and registers tools and hooks on it)"
            )
        skill.agent = self
        self.skills[skill_name] = skill
        self._ready = False
        self._pm.add(skill, name=skill_name)
        for attribute, member in _marked_members(type(skill)):
            if hasattr(member, TOOL_MARKER):
                self.register_tool(getattr(skill, attribute), source=skill)
            if hasattr(member, HANDOFF_MARKER):
                self.register_handoff(getattr(skill, attribute), source=skill)
            if hasattr(member, HTTP_MARKER):
                self._add_http(getattr(skill, attribute), getattr(member, HTTP_MARKER), skill)
            if hasattr(member, PROMPT_MARKER):
                options = getattr(member, PROMPT_MARKER)
                self._add_prompt(
                    getattr(skill, attribute), options["priority"], options["scope"], skill,
                    options.get("on_error", "raise"),
                )

    def _add_hooks(self, event: str, handlers: Any) -> None:
        entries = [handlers] if callable(handlers) or isinstance(handlers, dict) else list(handlers)
        for entry in entries:
            if callable(entry):
                self.register_hook(event, entry, source=self)
                continue
            if not isinstance(entry, dict) or "handler" not in entry or set(entry) - _HOOK_OPTIONS:
                raise ConfigurationError(
                    f"agent '{self.name}': hooks['{event}'] entries must be callables or dicts with "
                    f"'handler' and optional 'priority', 'scope'; got {entry!r}"
                )
            self.register_hook(
                event, entry["handler"], priority=entry.get("priority", DEFAULT_PRIORITY),
                scope=entry.get("scope"), source=self,
            )

    def _add_http(self, func: Callable[..., Any], options: dict[str, Any], source: Any) -> None:
        route = HttpRoute(options["path"], options["method"], func, _item_scope(options["scope"], source), source)
        for existing in self.http_routes:
            if (existing.path, existing.method) == (route.path, route.method):
                raise ConfigurationError(
                    f"agent '{self.name}': {route.method.upper()} {route.path} is declared by "
                    f"{_source_name(source)} and {_source_name(existing.source)}"
                )
        self.http_routes.append(route)

    # -- registration (also at run time) ----------------------------------------------------
    def register_tool(
        self, func: Callable[..., Any] | Tool, scope: Scope = None, source: Any = None
    ) -> Tool:
        """Add a server-side tool; offered to requests whose tool loop starts after this call.

        ``scope`` overrides the tool's own; otherwise the ``@tool`` scope, then the source
        skill's scope. Raises ConfigurationError when another tool or handoff has the same name.
        """
        built = func if isinstance(func, Tool) else Tool.from_function(func, _default_scope(source))
        if scope is not None:
            built.scope = normalize_scope(scope)
        self._add_callable(built, source)
        return built

    def register_handoff(
        self, handoff: Handoff | Callable[..., Any], scope: Scope = None, source: Any = None
    ) -> Handoff:
        """Offer a handoff to the model (a :func:`~robutler_core.handoff` object or an
        ``@handoff`` function); same timing and name rules as :meth:`register_tool`.

        Raises ConfigurationError for a name clash, an unknown model prefix, or a local agent
        this agent's ``directory`` does not hold (when it has one).
        """
        if not isinstance(handoff, Handoff):
            options = dict(getattr(handoff, HANDOFF_MARKER, None) or {})
            if options.get("scope") is None:
                options["scope"] = _default_scope(source)
            handoff = FunctionHandoff(handoff, **options)
        if scope is not None:
            handoff.scope = normalize_scope(scope)
        handoff.bind(self)
        self._add_callable(handoff, source)
        return handoff

    def unregister_tool(self, name: str, source: Any = None) -> Tool:
        """Remove the server-side tool ``name``; returns it. Requests whose tool loop starts
        after this call no longer see it (a running loop keeps its snapshot).

        ``source``: when given, the tool must be one it registered (a skill removes only its
        own). Raises ConfigurationError when the agent has no tool of that name (a handoff is
        not a tool) or another source registered it.
        """
        with self._lock:
            existing = self._tools.get(name)
            if existing is None or not isinstance(existing[0], Tool):
                raise ConfigurationError(f"agent '{self.name}' has no tool named '{name}'")
            if source is not None and existing[1] is not source:
                raise ConfigurationError(
                    f"agent '{self.name}': tool '{name}' belongs to {_source_name(existing[1])}, "
                    f"not {_source_name(source)}"
                )
            tools = dict(self._tools)
            del tools[name]
            self._tools = tools  # copy on write, as _add_callable
        return existing[0]

    def _add_callable(self, built: Tool | Handoff, source: Any) -> None:
        with self._lock:
            existing = self._tools.get(built.name)
            if existing is not None and _identity(existing[0]) != _identity(built):
                raise ConfigurationError(
                    f"agent '{self.name}': tool '{built.name}' from {_source_name(source)} "
                    f"clashes with the one from {_source_name(existing[1])}"
                )
            tools = dict(self._tools)
            tools[built.name] = (built, source)
            self._tools = tools  # copy on write: requests iterate a stable snapshot
            self._ready = False  # a model handoff may bring an LLM skill to initialise

    def register_hook(
        self,
        event: str,
        handler: Callable[..., Any],
        priority: int = DEFAULT_PRIORITY,
        scope: Scope = None,
        source: Any = None,
    ) -> None:
        """Add a lifecycle hook; an unknown event raises ConfigurationError.

        ``scope`` defaults to the source skill's. The hook runs from the next dispatch of its
        event on, in this request and others.
        """
        plugin = RuntimeHook(event, handler, priority, _item_scope(scope, source), source)
        name = f"{_source_name(source)}:{event}:{getattr(handler, '__name__', 'hook')}:{id(plugin)}"
        self._pm.add(plugin, name=name)

    def _add_prompt(
        self, func: Callable[..., Any], priority: int, scope: Scope, source: Any, on_error: str
    ) -> None:
        required = _item_scope(scope, source)
        with self._lock:
            takes_context = "context" in inspect.signature(func).parameters
            entry = (priority, len(self._prompts), required, func, takes_context, on_error == "skip")
            prompts = [*self._prompts, entry]
            prompts.sort(key=lambda entry: entry[:2])
            self._prompts = prompts

    # -- views -------------------------------------------------------------------------------
    def tools_for_scope(self, auth_scope: str) -> list[Tool]:
        """Server-side tools a caller with ``auth_scope`` may see and run."""
        return [t for t in self.callables_for_scope(auth_scope).values() if isinstance(t, Tool)]

    def handoffs_for_scope(self, auth_scope: str) -> list[Handoff]:
        """Handoffs a caller with ``auth_scope`` may see and use."""
        return [h for h in self.callables_for_scope(auth_scope).values() if isinstance(h, Handoff)]

    def callables_for_scope(self, auth_scope: str) -> dict[str, Tool | Handoff]:
        """Tools and handoffs, by name, that a caller with ``auth_scope`` may see and call."""
        return {name: t for name, (t, _) in self._tools.items() if scope_admits(t.scope, auth_scope)}

    def check_access(self, context: Context) -> None:
        """Raise PermissionDeniedError (403) when the agent's scope does not admit the caller."""
        context.require_scope(self.scope, f"agent '{self.name}' is open to")

    async def system_prompt(self, context: Context) -> str:
        """Instructions plus the outputs of the ``@prompt`` methods the caller's scope admits.

        A prompt's exception propagates (the request fails with its mapped error: a
        :mod:`robutler_core.errors` status, else 500), unless the prompt was declared with
        ``@prompt(on_error="skip")``: then it is logged at ERROR and the prompt left out."""
        parts = [self.instructions] if self.instructions else []
        for _priority, _seq, required, func, takes_context, skip_on_error in self._prompts:
            if not scope_admits(required, context.auth_scope):
                continue
            try:
                text = await await_me_maybe(func(context) if takes_context else func())
            except Exception:
                if not skip_on_error:
                    raise
                logger.exception("prompt %s of agent '%s' failed; left out (on_error='skip')", func, self.name)
                continue
            if text:
                parts.append(str(text))
        return "\n\n".join(parts)

    def dispatch(self, event: str, context: Context, **payload: Any) -> Coroutine[Any, Any, Any]:
        """Run an event's hooks (see :meth:`LifecyclePluginManager.dispatch`): the coroutine
        to await (that of the plugin manager itself, not one more around it)."""
        return self._pm.dispatch(event, context, **payload)

    def has_hooks(self, event: str) -> bool:
        """Whether ``event`` has a hook (whatever its scope): without one, :meth:`dispatch`
        would return the payload's value unchanged, so the request path skips it (no
        coroutine). Known once per event; adding a skill or a hook makes it be looked at again."""
        return self._pm.has_hooks(event)

    def info(self, auth_scope: str = "all") -> dict[str, Any]:
        """A JSON-ready description for a caller whose scope is ``auth_scope``: ``name``,
        ``object`` ("agent"), ``model``, ``fallbacks``, ``skills``, and only the ``tools``,
        ``handoffs`` and ``http`` routes that scope admits; ``instructions`` (the system
        prompt) only for a scope that admits ``"owner"`` (owner or admin); ``status``, by
        skill name, what skills report through :meth:`Skill.status` (left out when none
        does)."""
        described: dict[str, Any] = {"name": self.name, "object": "agent"}
        if scope_admits(_OWNER, auth_scope):
            described["instructions"] = self.instructions
        return {
            **described,
            "model": self.model_name,
            "fallbacks": [f.full_model_name for f in self.fallbacks],
            "skills": sorted(self.skills),
            "tools": [t.definition() for t in self.tools_for_scope(auth_scope)],
            "handoffs": [
                {"name": h.name, "type": h.kind, "target": h.target}
                for h in self.handoffs_for_scope(auth_scope)
            ],
            "http": [
                {"method": r.method.upper(), "path": f"/{self.name}{r.path}"}
                for r in self.http_routes if scope_admits(r.scope, auth_scope)
            ],
            **self._skills_status(auth_scope),
        }

    def _skills_status(self, auth_scope: str) -> dict[str, Any]:
        """``{"status": {skill name: Skill.status(auth_scope)}}`` for the skills that report
        something, else ``{}``; a failing ``status`` is logged and reported as its error."""
        reported: dict[str, Any] = {}
        for skill_name, skill in self.skills.items():
            try:
                status = skill.status(auth_scope)
            except Exception as exc:
                logger.exception("agent '%s': status of skill '%s' failed", self.name, skill_name)
                status = {"error": f"{type(exc).__name__}: {exc}"}
            if status is not None:
                reported[skill_name] = status
        return {"status": reported} if reported else {}

    async def call_tool(
        self, name: str, arguments: str | dict[str, Any] | None, context: Context
    ) -> ToolCallResult:
        """Run one server-side tool for a caller outside a chat completion (what an MCP
        server's ``tools/call`` does): inside :meth:`connection` (``on_connection`` on the
        context's headers, the agent's scope, ``finalize_connection`` once), the
        ``before_toolcall`` hooks, the tool, the ``after_toolcall`` hooks. Only a tool the
        caller's scope admits runs; any other name is answered as an unknown tool. Returns
        the result text as the model would get it and whether the call failed (blocked, no
        such tool, bad arguments, the tool raised: the text says why).

        Raises the guarding hooks' errors (401, 402, 403...) and PermissionDeniedError (403)
        when the agent's scope does not admit the caller.
        """
        async with self.connection(context):
            call = {
                "id": new_tool_call_id(), "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
                },
            }
            result, failed = await self._loop.run_tool(context, call, self.callables_for_scope(context.auth_scope))
            return ToolCallResult(tool_result_text(result), failed)

    async def describe(self, context: Context) -> dict[str, Any]:
        """:meth:`info` for the caller of ``context``, as a request would see the agent: runs
        the ``on_connection`` hooks (which authenticate and set ``context.auth_scope``), checks
        the agent's scope (PermissionDeniedError, 403), returns ``info(context.auth_scope)``;
        ``finalize_connection`` always runs. robutler-server serves it at ``GET /{name}``."""
        async with self.connection(context):
            return self.info(context.auth_scope)

    @contextlib.asynccontextmanager
    async def connection(self, context: Context) -> AsyncIterator[Context]:
        """The frame of every request to the agent (chat completion, ``@http`` call, info):
        ``context`` becomes the current Context, the skills are initialised, the
        ``on_connection`` hooks run and the agent's scope is checked (PermissionDeniedError,
        403) on entry; ``finalize_connection`` runs on exit, whatever happened.
        (:meth:`open_connection` and :meth:`close_connection` without a context manager.)"""
        token = await self.open_connection(context)
        try:
            yield context
        finally:
            await self.close_connection(context, token)

    async def open_connection(self, context: Context) -> Any:
        """Enter :meth:`connection`'s frame; returns the token to pass to :meth:`close_connection`,
        which must follow whatever happens. When an ``on_connection`` hook or the scope check
        fails, the frame is closed (``finalize_connection`` included) before the error is raised."""
        token = _current_context.set(context)
        try:
            if not self._ready or self._loop.own_initialize:  # ready: initialize() would return at once
                await self.initialize()
        except BaseException:
            _current_context.reset(token)
            raise
        try:
            if self._pm.has_hooks("on_connection"):
                await self.dispatch("on_connection", context)
            self.check_access(context)
        except BaseException:
            await self.close_connection(context, token)
            raise
        return token

    async def close_connection(self, context: Context, token: Any) -> None:
        """Leave :meth:`connection`'s frame: the ``finalize_connection`` hooks, then the previous
        current Context. The hooks are not cut short by a cancellation (a client gone, a
        shutdown deadline): when one of them may suspend they run to their end in their own
        task, then the cancellation goes on; plain synchronous hooks run in the caller's task,
        where no cancellation can reach them."""
        try:
            if not self._pm.may_suspend("finalize_connection"):
                if self._pm.has_hooks("finalize_connection"):
                    await self.dispatch("finalize_connection", context)
                return
            finalize = asyncio.ensure_future(self.dispatch("finalize_connection", context))
            await wait_cancelled(finalize)
            finalize.result()
        finally:
            _current_context.reset(token)

    @property
    def model_name(self) -> str | None:
        """``provider/model`` of the agent's LLM skill when known."""
        if self.llm is None:
            return None
        return self.llm.full_model_name

    # -- running -----------------------------------------------------------------------------
    def all_skills(self) -> list[Skill]:
        """Every skill the agent uses, each once: its own (``skills``), then the LLM skills
        reached only through ``fallbacks`` and model handoffs (:class:`LLMHandoff`)."""
        found: dict[int, Skill] = {}
        for skill in [*self.skills.values(), *self.fallbacks]:
            found.setdefault(id(skill), skill)
        for item, _source in self._tools.values():
            llm = getattr(item, "llm", None) if isinstance(item, LLMHandoff) else None
            if llm is not None:
                found.setdefault(id(llm), llm)
        return list(found.values())

    async def initialize(self) -> None:
        """Initialise (``Skill.initialize(agent)``) every skill of :meth:`all_skills` not yet
        initialised, in order: safe to call again and concurrently (one initialisation per
        skill). Each request calls it; a server calls it at start-up, so that slow imports
        and connections happen there. A skill's exception propagates (the skill stays
        uninitialised, so the next call tries again)."""
        if self._ready:  # nothing added or closed since every skill was initialised
            return
        if all(id(skill) in self._initialized for skill in self.all_skills()):
            self._ready = True
            return
        async with self._init_lock:
            for skill in self.all_skills():
                if id(skill) not in self._initialized:
                    await skill.initialize(self)
                    self._initialized[id(skill)] = skill
            self._ready = True

    async def close(self) -> None:
        """``Skill.close()`` of every skill of :meth:`all_skills`, each once, in reverse order;
        a failure is logged and the other skills still close. A later request initialises
        the skills again."""
        async with self._init_lock:
            for skill in reversed(self.all_skills()):
                try:
                    await skill.close()
                except Exception:
                    logger.exception("agent '%s': closing skill %s failed", self.name, type(skill).__name__)
            self._initialized = {}
            self._ready = False

    def check_configuration(self) -> list[str]:
        """Problems that keep the agent from working, one line each (empty when fine): every
        skill's ``check_configuration()`` (a provider skill without its API key), the
        fallbacks' and the handoff models' included. Never raises; does no I/O."""
        names = {id(skill): name for name, skill in self.skills.items()}
        problems = []
        for skill in self.all_skills():
            label = f"skill '{names[id(skill)]}'" if id(skill) in names else f"model '{_model_label(skill)}'"
            try:
                skill.check_configuration()
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                message = exc.message if isinstance(exc, RobutlerError) else f"{type(exc).__name__}: {exc}"
                problems.append(f"agent '{self.name}': {label}: {message}")
        return problems

    def new_context(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        stream: bool,
        *,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> Context:
        """A Context for one request; ``params`` are OpenAI request parameters for the model,
        ``headers`` the HTTP request's (names are lower-cased)."""
        return Context(
            agent=self, messages=[dict(m) for m in messages], stream=stream,
            tools=list(tools or []), params=params,
            headers={k.lower(): v for k, v in (headers or {}).items()},
        )

    async def http_request(self, route: HttpRoute, arguments: dict[str, Any], context: Context) -> Any:
        """Serve one call of an ``@http`` handler (robutler-server calls this); see
        :func:`robutler_core.http_routes.serve_http`."""
        return await serve_http(self, route, arguments, context)

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
        return await self._loop.serve(context)

    def run_streaming(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        context: Context | None = None,
        **params: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Answer ``messages`` as ``chat.completion.chunk`` dicts (an async iterator; see
        :meth:`robutler_core.loop.ToolLoop.stream`).

        The request runs in its own task; closing the iterator early (a client disconnect)
        cancels it, and the upstream model call with it; ``finalize_connection`` still runs
        once. An error is raised from the iterator where it happened. With
        ``stream_options={"include_usage": True}`` the last chunk carries ``usage``.
        """
        context = context or self.new_context(messages, tools, True, **params)
        return self._loop.stream(context)

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model_name!r}, skills={sorted(self.skills)})"


BaseAgent = Agent
"""Alias used by the design documents."""


def connect_agents(agents: list[Agent]) -> dict[str, Agent]:
    """Let ``agents`` hand off to each other by name: sets each one's ``directory``.

    robutler-server calls this for the agents it serves; call it yourself when embedding.
    Raises ConfigurationError for two agents with one name or a handoff naming an agent
    that is not among them.
    """
    directory: dict[str, Agent] = {}
    for agent in agents:
        if agent.name in directory and directory[agent.name] is not agent:
            raise ConfigurationError(f"two agents are named '{agent.name}'")
        directory[agent.name] = agent
    for agent in directory.values():
        agent.directory = directory
        for handoff in agent.handoffs_for_scope("admin"):
            handoff.bind(agent)
    return directory


_MARKS = (TOOL_MARKER, HANDOFF_MARKER, HTTP_MARKER, PROMPT_MARKER)
_MARKED_MEMBERS: weakref.WeakKeyDictionary[type, tuple[tuple[str, Any], ...]] = weakref.WeakKeyDictionary()


def _marked_members(cls: type) -> tuple[tuple[str, Any], ...]:
    """(attribute, class member) of each ``@tool``, ``@handoff``, ``@http`` or ``@prompt``
    member of a skill class, in :func:`definition_order`; read once per class (cached), like
    its hooks (see :class:`~robutler_core.lifecycle.LifecyclePluginManager`)."""
    cached = _MARKED_MEMBERS.get(cls)
    if cached is None:
        members = ((attribute, getattr(cls, attribute, None)) for attribute in definition_order(cls))
        cached = tuple(
            (attribute, member) for attribute, member in members
            if callable(member) and any(hasattr(member, mark) for mark in _MARKS)
        )
        _MARKED_MEMBERS[cls] = cached
    return cached


def _default_scope(source: Any) -> Any:
    return source.scope if isinstance(source, Skill) else None


def _item_scope(scope: Scope, source: Any) -> frozenset[str] | None:
    """An item's scope: its own when given, else its source skill's (everyone for the agent's)."""
    return normalize_scope(scope) if scope is not None else _default_scope(source)


def _identity(item: Tool | Handoff) -> Any:
    return item.func if isinstance(item, (Tool, FunctionHandoff)) else item


def _model_label(skill: Skill) -> str:
    return skill.full_model_name if isinstance(skill, LLMSkill) else type(skill).__name__


def _source_name(source: Any) -> str:
    if source is None:
        return "the agent"
    if isinstance(source, Agent):
        return f"agent '{source.name}'"
    return f"skill {type(source).__name__}"
