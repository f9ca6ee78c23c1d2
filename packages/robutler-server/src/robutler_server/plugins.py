"""Server hooks: installed distributions add their own routes to the app of ``robutler serve``.

A distribution implements ``register_routes`` in the module its ``robutler`` entry point names
(the same module that registers its skills), with :data:`robutler_core.hookimpl`::

    from robutler_core import hookimpl

    @hookimpl
    def register_routes(app, agents):
        for name, agent in agents.items():
            app.add_api_route(f"/{name}/status", make_status_handler(agent))

The server knows nothing of what a plugin serves: robutler-skill-mcp mounts ``/{agent}/mcp``
this way, as any third-party package could.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Mapping
from types import MappingProxyType
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
        ``agents`` (a read-only mapping, agent name -> :class:`robutler_core.Agent`).

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


def register_routes(
    pm: pluggy.PluginManager, app: FastAPI, agents: Mapping[str, Agent]
) -> list[contextlib.AbstractAsyncContextManager[Any]]:
    """Call every plugin's ``register_routes`` in registration order; returns the context
    managers they gave. Raises ConfigurationError naming the plugin that failed or returned
    something other than an async context manager or ``None``."""
    arguments = {"app": app, "agents": MappingProxyType(dict(agents))}
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
