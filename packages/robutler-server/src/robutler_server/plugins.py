"""Server hooks: installed distributions add their own routes to the app of ``robutler serve``.

A distribution implements ``register_routes`` in the module its ``robutler`` entry point names
(the same module that registers its skills), with :data:`robutler_core.hookimpl`::

    from robutler_core import hookimpl

    @hookimpl
    def register_routes(app, agents):
        for name, agent in agents.items():
            app.add_api_route(f"/{name}/status", make_status_handler(agent))

The server knows nothing of what a plugin serves: robutler-skill-mcp mounts ``/{agent}/mcp``
this way, as any third-party package could. ``agents`` is the server's live view of the agents
it serves (:class:`ServedAgents`): a plugin that looks the agent up when a request comes, rather
than closing over the agents it was given, also serves the agents of a reloaded agents file and
those a ``resolve_agent`` hook finds (robutler-skill-mcp does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from robutler_core.errors import ConfigurationError
from robutler_core.hookspecs import hookspec
from robutler_core.plugins import installed_plugins

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from robutler_core import Agent


class ServerSpecs:
    """Hooks a plugin distribution implements to add to the server."""

    @hookspec
    def register_routes(
        self, app: FastAPI, agents: Mapping[str, Agent]
    ) -> contextlib.AbstractAsyncContextManager[Any] | None:
        """Add routes to ``app`` (``app.add_api_route``, ``app.mount``...) for the served
        ``agents`` (a read-only mapping, agent name -> :class:`robutler_core.Agent`, of the
        agents served at the time it is read: see :class:`ServedAgents`).

        Called once by :func:`robutler_server.create_app`, after the agents' own ``@http``
        routes and before the server's ``/{agent}`` routes, so a plugin's paths take precedence
        over the generic ones. Return an async context manager to run something for the app's
        lifetime (a session manager, a background task): it is entered at start-up after every
        agent has initialised and exited at shutdown before the agents close. Return ``None``
        otherwise. An exception fails ``create_app`` with a ConfigurationError naming the
        plugin.
        """


    @hookspec
    def register_commands(self, cli: click.Group) -> None:
        """Add commands (or options of existing commands) to the ``robutler`` command line, a
        ``click.Group``: ``cli.add_command(my_group)``. Called once when ``robutler`` starts.
        An exception is reported on stderr naming the plugin, and the other commands still
        work."""

    @hookspec
    def resolve_agent(self, name: str) -> Agent | Awaitable[Agent | None] | None:
        """The agent named ``name``, which the served agents file does not declare (agents
        kept in a database, per-tenant agents), or ``None`` when this plugin has none; may be
        async. Asked per name not served, the result cached by the server
        (:mod:`robutler_server.dynamic`); an exception makes that request 503."""


def server_plugins() -> pluggy.PluginManager:
    """The process's installed plugins (:func:`robutler_core.plugins.installed_plugins`) with
    the server's hookspecs added."""
    return with_server_specs(installed_plugins())


def with_server_specs(pm: pluggy.PluginManager) -> pluggy.PluginManager:
    """``pm`` with :class:`ServerSpecs` added (once); returns ``pm``."""
    caller = getattr(pm.hook, "register_commands", None)
    if caller is None or caller.spec is None:
        pm.add_hookspecs(ServerSpecs)
    return pm


class ServedAgents(Mapping[str, "Agent"]):
    """The agents a server serves, by name, read-only and live: what ``register_routes`` gets.

    Iterating gives the names of the agents-file agents served now (those the server started
    with, or those of the last reload of the file); looking a name up (``agents[name]``,
    ``agents.get(name)``, ``name in agents``) also finds an agent a ``resolve_agent`` hook
    found and the server still caches (:mod:`robutler_server.dynamic`). Raises KeyError for a
    name it does not serve now.
    """

    def __init__(self, served: Mapping[str, Agent], find_more: Callable[[str], Agent | None]) -> None:
        self._served = served
        self._find_more = find_more

    def __getitem__(self, name: str) -> Agent:
        agent = self._served.get(name) or self._find_more(name)
        if agent is None:
            raise KeyError(name)
        return agent

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._served))  # a copy: a reload may change them meanwhile

    def __len__(self) -> int:
        return len(self._served)


def served_agents(app: FastAPI, agents: Mapping[str, Agent]) -> ServedAgents:
    """A :class:`ServedAgents` over ``agents`` (the app's agents by name, which a reload changes
    in place) and the app's dynamic agents (``app.state.dynamic_agents``, once installed,
    looked up when a name is)."""

    def dynamic(name: str) -> Agent | None:
        found = getattr(app.state, "dynamic_agents", None)
        return found.get(name) if found is not None else None

    return ServedAgents(agents, dynamic)


def register_routes(
    pm: pluggy.PluginManager, app: FastAPI, agents: Mapping[str, Agent]
) -> list[contextlib.AbstractAsyncContextManager[Any]]:
    """Call every plugin's ``register_routes`` in registration order with ``app`` and
    :func:`served_agents` of ``app`` and ``agents``; returns the context managers they gave. Raises ConfigurationError naming the plugin
    that failed or returned something other than an async context manager or ``None``."""

    arguments = {"app": app, "agents": served_agents(app, agents)}
    contexts: list[contextlib.AbstractAsyncContextManager[Any]] = []
    for impl in reversed(with_server_specs(pm).hook.register_routes.get_hookimpls()):
        try:
            result = impl.function(**{name: arguments[name] for name in impl.argnames})
        except Exception as exc:
            raise ConfigurationError(
                f"plugin '{impl.plugin_name}' failed to register its routes: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            continue
        if not (hasattr(result, "__aenter__") and hasattr(result, "__aexit__")):
            raise ConfigurationError(
                f"plugin '{impl.plugin_name}' register_routes returned {type(result).__name__}; "
                "expected an async context manager or None"
            )
        contexts.append(result)
    return contexts


def register_commands(pm: pluggy.PluginManager, cli: Any) -> list[str]:
    """Call every plugin's ``register_commands(cli)``; returns one line per plugin that
    failed (the caller reports them), so that one broken plugin does not break the CLI."""
    problems = []
    for impl in reversed(with_server_specs(pm).hook.register_commands.get_hookimpls()):
        try:
            impl.function(**{name: {"cli": cli}[name] for name in impl.argnames})
        except Exception as exc:
            problems.append(f"plugin '{impl.plugin_name}' failed to add its commands: {type(exc).__name__}: {exc}")
    return problems
