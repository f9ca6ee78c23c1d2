"""The ``register_routes`` hook: an installed plugin adds its own routes to the server, and may
run something for the app's lifetime, without the server knowing what it serves."""

import contextlib
import types

import httpx
import pytest
from fastapi import Request

from robutler_core import Agent, Skill, hookimpl
from robutler_core.errors import ConfigurationError
from robutler_core.plugins import get_plugin_manager
from robutler_server import create_app
from robutler_server.testing import serve_in_thread


def plugins_with(*plugins):
    pm = get_plugin_manager(load_entry_points=False)
    for index, plugin in enumerate(plugins):
        pm.register(plugin, name=f"plugin{index}")
    return pm


class StatusRoutes:
    """A plugin serving ``GET /{agent}/status`` and ``GET /{agent}/models`` (shadowing the
    server's own), recording its lifetime."""

    def __init__(self, events):
        self.events = events

    @hookimpl
    def register_routes(self, app, agents):
        for name, agent in agents.items():
            status = status_handler(agent)
            app.add_api_route(f"/{name}/status", status, methods=["GET"])
            app.add_api_route(f"/{name}/models", status, methods=["GET"])

        @contextlib.asynccontextmanager
        async def lifetime():
            self.events.append("plugin started")
            yield
            self.events.append("plugin stopped")

        return lifetime()


def status_handler(agent):
    async def status(request: Request):
        return {"agent": agent.name, "model": agent.model_name, "plugin": True}

    return status


class Recorder(Skill):
    def __init__(self, events):
        super().__init__()
        self.events = events

    async def initialize(self, agent):
        self.events.append("agent initialized")

    async def close(self):
        self.events.append("agent closed")


def test_plugin_routes_are_served_and_take_precedence_over_the_generic_ones():
    events = []
    app = create_app([Agent("a", model="test")], plugins=plugins_with(StatusRoutes(events)))
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/a/status").json() == {"agent": "a", "model": "test", "plugin": True}
        assert httpx.get(f"{url}/a/models").json()["plugin"] is True
        assert httpx.get(f"{url}/a").json()["name"] == "a"  # the server's routes still work
        assert httpx.get(f"{url}/b/status").status_code == 404  # only served agents get routes


def test_the_plugin_context_runs_inside_the_agents_lifetime():
    events = []
    app = create_app(
        [Agent("a", model="test", skills={"recorder": Recorder(events)})],
        plugins=plugins_with(StatusRoutes(events)),
    )
    with serve_in_thread(app):
        assert events == ["agent initialized", "plugin started"]
    assert events == ["agent initialized", "plugin started", "plugin stopped", "agent closed"]


def test_an_implementation_may_take_only_the_arguments_it_needs():
    seen = []
    plugin = types.SimpleNamespace(register_routes=hookimpl(lambda app: seen.append(app)))
    app = create_app([Agent("a", model="test")], plugins=plugins_with(plugin))
    assert seen == [app]


def test_the_agents_mapping_is_read_only():
    def register_routes(agents):
        agents["intruder"] = None

    plugin = types.SimpleNamespace(register_routes=hookimpl(register_routes))
    with pytest.raises(ConfigurationError, match="plugin 'plugin0' failed to register its routes: TypeError"):
        create_app([Agent("a", model="test")], plugins=plugins_with(plugin))


def test_a_failing_plugin_fails_create_app_naming_it():
    def register_routes(app, agents):
        raise RuntimeError("no port for the side channel")

    plugin = types.SimpleNamespace(register_routes=hookimpl(register_routes))
    with pytest.raises(ConfigurationError) as caught:
        create_app([Agent("a", model="test")], plugins=plugins_with(plugin))
    assert caught.value.message == (
        "plugin 'plugin0' failed to register its routes: RuntimeError: no port for the side channel"
    )


def test_a_plugin_returning_something_else_than_a_context_manager_is_a_configuration_error():
    plugin = types.SimpleNamespace(register_routes=hookimpl(lambda app, agents: "started"))
    with pytest.raises(ConfigurationError, match="returned str; expected an async context manager or None"):
        create_app([Agent("a", model="test")], plugins=plugins_with(plugin))


def test_without_plugins_that_implement_it_nothing_changes():
    app = create_app([Agent("a", model="test")], plugins=plugins_with())
    paths = {route.path for route in app.routes}
    assert "/{agent_name}/chat/completions" in paths
    assert not any(path.startswith("/a/") for path in paths)


# --- register_commands ---------------------------------------------------------------------------


def test_a_plugin_adds_commands_to_the_robutler_cli():
    import click
    from click.testing import CliRunner

    from robutler_server.plugins import register_commands

    @click.group()
    def cli():
        pass

    @click.command()
    def hello():
        click.echo("hello from a plugin")

    good = types.SimpleNamespace(register_commands=hookimpl(lambda cli: cli.add_command(hello)))

    def broken_commands(cli):
        raise ImportError("no module named 'yaml2'")

    broken = types.SimpleNamespace(register_commands=hookimpl(broken_commands))
    problems = register_commands(plugins_with(good, broken), cli)
    assert problems == ["plugin 'plugin1' failed to add its commands: ImportError: no module named 'yaml2'"]
    result = CliRunner().invoke(cli, ["hello"])
    assert result.exit_code == 0 and result.output == "hello from a plugin\n"
