"""The agent's lifecycle plugin manager and the dispatch of hooks by priority and scope.

pluggy has no async and no numeric priority, so dispatch is done here: take the event's
hookimpls, keep those whose scope admits the caller, sort by priority (lower first, stable in
registration order), call each with the arguments it names, and await what is awaitable.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import pluggy

from .context import Context
from .decorators import DEFAULT_PRIORITY, HOOK_MARKER, definition_order
from .errors import ConfigurationError
from .hookspecs import DROP, LIFECYCLE_EVENTS, OBSERVING_EVENTS, LifecycleSpecs
from .scopes import Scope, normalize_scope, scope_admits
from .tools import await_me_maybe

logger = logging.getLogger("robutler_core.lifecycle")

_IMPL_OPTS = {
    "wrapper": False,
    "hookwrapper": False,
    "optionalhook": False,
    "tryfirst": False,
    "trylast": False,
}


class RuntimeHook:
    """A hook added with ``register_hook`` or ``Agent(hooks=...)``: one callable for one
    event, as a pluggy plugin. Any callable with an inspectable signature works (function,
    bound method, ``functools.partial``, callable object); its parameter names say which of
    the event's arguments it receives.

    Raises ConfigurationError for a callable without a signature or a parameter the event
    does not have.
    """

    def __init__(
        self, event: str, function: Callable[..., Any], priority: int, scope: Scope, owner: Any
    ) -> None:
        self.event = event
        self.function = function
        self.priority = priority
        self.scope = normalize_scope(scope)
        self.owner = owner
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"hook {function!r} for '{event}' has no inspectable signature; pass a Python "
                "function whose parameter names are the event's arguments"
            ) from None
        self.argnames = tuple(
            p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        spec = getattr(LifecycleSpecs, event, None)
        if spec is not None:
            allowed = [n for n in inspect.signature(spec).parameters if n != "self"]
            unknown = [n for n in self.argnames if n not in allowed]
            if unknown:
                raise ConfigurationError(
                    f"hook {getattr(function, '__name__', function)!r} for '{event}' takes "
                    f"{', '.join(unknown)}; '{event}' passes only: {', '.join(allowed)}"
                )

    def handler(self, *args: Any) -> Any:
        """The pluggy hookimpl: calls the function with the arguments it names."""
        return self.function(*args)


class _ClassHooks(NamedTuple):
    """What registering an instance of one plugin class needs, worked out once per class."""

    hooks: tuple[tuple[str, Any, str], ...] | None
    """(attribute, hookimpl options, event) of each hookimpl the class declares; ``None``
    when instances of the class go through pluggy's own scan (a class with ``__slots__`` or
    its own ``__dir__``)."""
    names: frozenset[str]
    """The attributes in ``hooks``."""
    order: dict[str, int]
    """Attribute name -> place in :func:`definition_order`."""


_CLASS_HOOKS: weakref.WeakKeyDictionary[type, _ClassHooks] = weakref.WeakKeyDictionary()
_SPECS: dict[str, Any] = {}


def _lifecycle_specs() -> dict[str, Any]:
    """The pluggy HookSpec of each lifecycle event, built once per process and shared by the
    agents' plugin managers (a HookSpec is read-only once built)."""
    if not _SPECS:
        template = pluggy.PluginManager("robutler")
        template.add_hookspecs(LifecycleSpecs)
        _SPECS.update({event: getattr(template.hook, event).spec for event in LIFECYCLE_EVENTS})
    return _SPECS


class LifecyclePluginManager(pluggy.PluginManager):
    """One per agent: its skills (and runtime hooks) are the plugins, events the hookspecs.

    Constructing one and registering a skill are cheap (an agent is built in tens of
    microseconds): the hookspecs are parsed once per process, and which attributes of a
    skill class are hookimpls once per class, the first time an instance is registered. A
    class's hook methods are read then: adding or replacing them on the class afterwards
    does not reach later agents (register a hook at run time with ``register_hook``).
    Instances whose own attributes hold callables, and classes with ``__slots__`` or their
    own ``__dir__``, take pluggy's full scan each time, with the same result.
    """

    def __init__(self) -> None:
        super().__init__("robutler")
        for event, spec in _lifecycle_specs().items():  # add_hookspecs(LifecycleSpecs), cached
            caller = pluggy.HookCaller(event, self._hookexec)
            caller.spec = spec
            setattr(self.hook, event, caller)
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._sequence: dict[int, tuple[int, dict[str, int]]] = {}
        self._sorted: dict[str, list[tuple[pluggy.HookImpl, int, frozenset[str] | None]]] = {}
        # event -> what dispatch calls, in order: (function, argument names, scope, hookimpl)
        self._plans: dict[str, tuple[tuple[Callable[..., Any], tuple[str, ...], frozenset[str] | None, pluggy.HookImpl], ...]] = {}
        self._suspends: dict[str, bool] = {}  # by event: whether a hook may suspend (is not plain sync)

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        if isinstance(plugin, RuntimeHook):
            return {**_IMPL_OPTS, "specname": plugin.event} if name == "handler" else None
        return super().parse_hookimpl_opts(plugin, name)

    def add(self, plugin: Any, name: str) -> None:
        """Register a plugin; an unknown event or argument fails with ConfigurationError."""
        declared = self._class_hooks(type(plugin))
        with self._lock:
            try:
                if not self._register_declared(plugin, name, declared):
                    self.register(plugin, name=name)
                    self.check_pending()
            except pluggy.PluginValidationError as exc:
                if self.is_registered(plugin):
                    self.unregister(plugin)
                raise ConfigurationError(
                    f"{name}: {exc}; lifecycle events are: {', '.join(LIFECYCLE_EVENTS)}"
                ) from None
            self._sequence[id(plugin)] = (next(self._order), declared.order)
            self._plans, self._sorted, self._suspends = {}, {}, {}

    def _class_hooks(self, cls: type) -> _ClassHooks:
        """The :class:`_ClassHooks` of ``cls`` (cached; computing it twice is harmless)."""
        cached = _CLASS_HOOKS.get(cls)
        if cached is not None:
            return cached
        order = {name: i for i, name in enumerate(definition_order(cls))}
        hooks: tuple[tuple[str, Any, str], ...] | None = None
        plain = cls.__dir__ is object.__dir__ and not any(
            isinstance(value, types.MemberDescriptorType) for klass in cls.__mro__ for value in vars(klass).values()
        )
        if plain and not issubclass(cls, RuntimeHook):
            found = []
            for attribute in dir(cls):  # what pluggy's scan finds on an instance, minus its __dict__
                opts = pluggy.PluginManager.parse_hookimpl_opts(self, cls, attribute)
                if opts is not None:
                    for key in ("tryfirst", "trylast", "optionalhook", "hookwrapper", "wrapper"):
                        opts.setdefault(key, False)  # pluggy's normalize_hookimpl_opts
                    opts.setdefault("specname", None)
                    found.append((attribute, opts, opts.get("specname") or attribute))
            hooks = tuple(found)
        cached = _ClassHooks(hooks, frozenset(a for a, _, _ in hooks or ()), order)
        _CLASS_HOOKS[cls] = cached
        return cached

    def _register_declared(self, plugin: Any, name: str, declared: _ClassHooks) -> bool:
        """Register ``plugin`` from its class's cached hookimpls, as pluggy's ``register``
        would (same HookImpls, same checks, all-or-nothing); ``False`` when it cannot be
        done that way (pluggy's scan is needed, or pluggy is to raise its own error)."""
        if declared.hooks is None:
            return False
        own = getattr(plugin, "__dict__", None) or {}
        if own and (not declared.names.isdisjoint(own) or any(callable(v) for v in own.values())):
            return False  # the instance's own attributes might hold or shadow a hookimpl
        registered = self._name2plugin
        if name in registered or plugin in registered.values():
            return False
        impls = []
        for attribute, opts, event in declared.hooks:
            caller = getattr(self.hook, event, None)
            if caller is None or caller.spec is None:
                return False  # an unknown event: pluggy registers it and check_pending fails
            impl = pluggy.HookImpl(plugin, name, getattr(plugin, attribute), opts)
            self._verify_hook(caller, impl)
            impls.append((caller, impl))
        registered[name] = plugin
        for caller, impl in impls:
            caller._add_hookimpl(impl)
        return True

    def hookimpls(self, event: str) -> list[tuple[pluggy.HookImpl, int, frozenset[str] | None]]:
        """The event's (hookimpl, priority, scope), sorted by priority, then in registration
        order: plugins in the order added, a skill's methods in the order the class defines
        them (pluggy itself would order them by name)."""
        cached = self._sorted.get(event)
        if cached is not None:
            return cached
        with self._lock:
            impls = [(impl, *_impl_options(impl)) for impl in getattr(self.hook, event).get_hookimpls()]
            impls.sort(key=lambda entry: (entry[1], *self._registration(entry[0])))
            self._sorted[event] = impls
            plan = tuple(
                (impl.plugin.function, impl.plugin.argnames, scope, impl)
                if isinstance(impl.plugin, RuntimeHook) else (impl.function, tuple(impl.argnames), scope, impl)
                for impl, _priority, scope in impls
            )
            self._suspends[event] = not all(_plain_sync(function) for function, *_ in plan)
            self._plans[event] = plan
            return impls

    def has_hooks(self, event: str) -> bool:
        """Whether ``event`` has any hook (whatever its scope): when not, a caller may skip
        its :meth:`dispatch`, which would return the payload's value unchanged. Worked out
        once per event; registering a plugin or a hook makes it be worked out again."""
        plan = self._plans.get(event)
        while plan is None:
            self.hookimpls(event)
            plan = self._plans.get(event)
        return bool(plan)

    def may_suspend(self, event: str) -> bool:
        """Whether a dispatch of ``event`` may suspend (give the event loop a turn, where a
        cancellation can reach it): some hook is not a plain synchronous function or method.
        A synchronous hook that returns an awaitable counts as synchronous."""
        suspends = self._suspends.get(event)
        while suspends is None:
            self.hookimpls(event)
            suspends = self._suspends.get(event)
        return suspends

    def _registration(self, impl: pluggy.HookImpl) -> tuple[int, int]:
        """(the plugin's place among the plugins, the method's place in its class)."""
        sequence, members = self._sequence.get(id(impl.plugin), (0, {}))
        return sequence, members.get(getattr(impl.function, "__name__", ""), 0)

    async def dispatch(self, event: str, context: Context, **payload: Any) -> Any:
        """Run the event's hooks for ``context``; returns the (possibly replaced) payload.

        ``payload`` holds at most one replaceable value first (``message``, ``chunk``,
        ``tool_call``, ``result``), which a hook replaces by returning something other than
        ``None`` or the context; a hook returning :data:`DROP` ends the dispatch, which then
        returns ``DROP``. Hooks of observing events log their exceptions; others raise.
        """
        replaceable = next(reversed(payload)) if payload else None
        plan = self._plans.get(event)
        while plan is None:  # (re)built by hookimpls; an add() meanwhile clears it again
            self.hookimpls(event)
            plan = self._plans.get(event)
        if not plan:
            return payload.get(replaceable) if replaceable is not None else None
        arguments = {"context": context, **payload}
        for function, names, scope, impl in plan:
            if scope is not None and not scope_admits(scope, context.auth_scope):
                continue  # (an earlier hook of this event may have set auth_scope)
            try:
                result = function(*[arguments[name] for name in names])
                if result is not None:  # most hooks are sync and return None: no coroutine then
                    result = await await_me_maybe(result)
            except Exception:
                if event not in OBSERVING_EVENTS:
                    raise
                logger.exception("%s hook %s of %s failed", event, impl.function, impl.plugin_name)
                continue
            if result is DROP:
                return DROP
            if replaceable is not None and result is not None and result is not context:
                payload[replaceable] = arguments[replaceable] = result
        return payload.get(replaceable) if replaceable is not None else None


def _plain_sync(function: Any) -> bool:
    """A plain function or bound method that is not a coroutine or async generator function."""
    if not (inspect.isfunction(function) or inspect.ismethod(function)):
        return False
    return not (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function))


def _impl_options(impl: pluggy.HookImpl) -> tuple[int, frozenset[str] | None]:
    plugin = impl.plugin
    if isinstance(plugin, RuntimeHook):
        return plugin.priority, plugin.scope
    options = getattr(impl.function, HOOK_MARKER, None) or {}
    scope = options.get("scope")
    return (
        options.get("priority", DEFAULT_PRIORITY),
        normalize_scope(scope) if scope is not None else getattr(plugin, "scope", None),
    )
