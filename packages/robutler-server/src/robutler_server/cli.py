"""The ``robutler`` command: ``robutler serve [AGENTS_FILE]``, ``robutler skills`` and
``robutler new-skill NAME``."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from typing import NoReturn

import click

from robutler_core import Agent
from robutler_core.errors import ConfigurationError
from robutler_core.plugins import installed_skills

logger = logging.getLogger("robutler_server")

DEMO_AGENT = "assistant"


def demo_agent() -> tuple[Agent, str]:
    """The agent served when no agents file is given, and the line that says so.

    With ``OPENAI_API_KEY`` set and a skill serving ``openai/`` installed it uses
    ``openai/gpt-4o-mini``; otherwise the offline ``test`` model.
    """
    instructions = "You are a helpful assistant."
    if os.environ.get("OPENAI_API_KEY"):
        try:
            agent = Agent(DEMO_AGENT, instructions, model="openai/gpt-4o-mini")
            return agent, f"no agents file given: serving demo agent '{DEMO_AGENT}' on openai/gpt-4o-mini"
        except ConfigurationError:
            pass
    agent = Agent(DEMO_AGENT, instructions, model="test")
    return agent, (
        f"no agents file given and no provider key: serving demo agent '{DEMO_AGENT}' on the "
        "offline 'test' model"
    )


@click.group()
@click.version_option(package_name="robutler-server")
def cli() -> None:
    """Robutler: serve AI agents as OpenAI-compatible chat-completions endpoints."""


@cli.command()
@click.argument("agents_file", required=False, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind (0: any free port).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--state-dsn", envvar="ROBUTLER_POSTGRES_DSN", metavar="DSN",
              help="PostgreSQL DSN for stored responses (Responses API), shared by every worker and "
              "kept across restarts [env: ROBUTLER_POSTGRES_DSN]; default: the most recent 1,000 in memory. "
              "Needs robutler-server[postgres].")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes sharing the port (uvicorn's supervisor); metrics add up across them.")
@click.option("--graceful-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds that requests and streams in flight get to finish after SIGTERM before "
              "they are cancelled (their finalize_connection still runs).")
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]),
              help="json: one JSON object per line (time, level, logger, message, request_id).")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log one line per request (off by default: it costs throughput).")
@click.option("--ready-retry-interval", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds between retries of an agent whose skill failed to initialise (it answers 503 meanwhile).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), metavar="BYTES",
              help="Largest request body; a larger one is answered 413 before it is read [default: 4194304, "
              "or the agents file's server.max_body_bytes].")
@click.option("--rate-limit-storage", metavar="URL", envvar="ROBUTLER_RATE_LIMIT_STORAGE",
              help="Where rate-limit counters live: memory:// (this process) or redis://host:port shared by "
              "every worker and server (needs robutler-server[redis]) [env: ROBUTLER_RATE_LIMIT_STORAGE; "
              "default: memory://, or server.rate_limit_storage].")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="An origin browsers may call the server from (repeatable; added to server.cors_origins); "
              "none by default.")
@click.option("--sse-ping", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Send an SSE comment on a stream quiet for this long, so proxies keep it open (0: never) "
              "[default: 15, or server.sse_ping].")
@click.option("--tool-threads", type=click.IntRange(min=1), metavar="N",
              help="Threads that run synchronous tools [default: 32, or server.tool_threads].")
@click.option("--reload-agents", is_flag=True, default=False,
              help="Re-read AGENTS_FILE when it changes or on SIGHUP; an invalid file is refused (logged) "
              "and the agents loaded before keep serving.")
def serve(agents_file: str | None, host: str, port: int, log_level: str, state_dsn: str | None,
          workers: int = 1, graceful_timeout: float = 30.0, log_format: str = "text", access_log: bool = False,
          ready_retry_interval: float = 10.0, max_body_bytes: int | None = None,
          rate_limit_storage: str | None = None, cors_origins: tuple[str, ...] = (),
          sse_ping: float | None = None, tool_threads: int | None = None, reload_agents: bool = False) -> None:
    """Serve the agents of AGENTS_FILE (YAML), or a demo agent when none is given.

    Every agent is checked before anything is served: a bad agents file, an agent that cannot
    work as configured (bad skill options, unknown model, missing API key), or an address that
    cannot be bound ends the command with status 1 and one line per problem on stderr.
    SIGTERM shuts down gracefully (:mod:`robutler_server.serving`) with exit status 0.
    """
    import logging.config

    from . import serving

    parameters = dict(click.get_current_context().params) if not serving._building else {}
    if workers > 1:
        serving.prepare_multiprocess_metrics()
    from .app import create_app
    from .config import AgentsFileError, ServerConfig, load_agents_file
    from .responses_store import response_store

    logging.config.dictConfig(serving.logging_config(log_level, log_format, access_log))
    if serving.extra_tracing_configured():
        serving.configure_tracing()
    if reload_agents and not agents_file:
        fail(["--reload-agents needs an AGENTS_FILE"])
    try:
        limits: dict = {}
        server = ServerConfig()
        if agents_file:
            agents, limits, server = load_agents_file(agents_file)
            logger.info("serving %d agent(s) from %s: %s", len(agents), agents_file,
                        ", ".join(a.name for a in agents))
        else:
            agent, line = demo_agent()
            agents = [agent]
            logger.info(line)
        try:
            server = server.with_options(
                max_body_bytes=max_body_bytes, rate_limit_storage=rate_limit_storage, cors_origins=cors_origins,
                sse_ping=sse_ping, tool_threads=tool_threads,
            )
        except ValueError as exc:
            raise ConfigurationError(f"server settings: {exc}") from None
        app = create_app(agents, response_store=response_store(state_dsn),
                         ready_retry_interval=ready_retry_interval, shutdown_timeout=graceful_timeout + 10,
                         server=server, limits=limits, reload_agents_file=agents_file if reload_agents else None)
    except AgentsFileError as exc:
        fail(exc.problems)
    except ConfigurationError as exc:
        fail([f"{agents_file}: {exc.message}" if agents_file else exc.message])
    if serving.building_worker_app(app):
        return
    try:
        sockets = bind(host, port)
    except ConfigurationError as exc:
        fail([exc.message])
    for agent in agents:
        logger.info("agent '%s' (model %s) at /%s/chat/completions and /%s/responses",
                    agent.name, agent.model_name, agent.name, agent.name)
    for sock in sockets:
        address, bound_port = sock.getsockname()[:2]
        shown = f"[{address}]" if sock.family == socket.AF_INET6 else address
        logger.info("bound http://%s:%d: serving there once start-up completes (CTRL+C to quit)", shown, bound_port)
    serving.run(app, sockets, parameters=parameters, log_level=log_level, log_format=log_format,
                access_log=access_log, workers=workers, graceful_timeout=graceful_timeout)


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening-ready TCP sockets bound to every address of ``host`` at ``port``, as uvicorn
    would bind them, so that a bad host or a port in use is found before start-up.

    Raises ConfigurationError (one line: the address and the reason) when ``host`` does not
    resolve or an address cannot be bound (in use, not local, no permission).
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigurationError(f"cannot serve on host '{host}': {getattr(exc, 'strerror', None) or exc}") from None
    sockets: list[socket.socket] = []
    for family, kind, proto, _name, address in dict.fromkeys((i[0], i[1], i[2], "", i[4]) for i in infos):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            for other in sockets:
                other.close()
            shown = f"[{address[0]}]:{address[1]}" if family == socket.AF_INET6 else f"{address[0]}:{address[1]}"
            raise ConfigurationError(f"cannot listen on {shown}: {exc.strerror or exc}") from None
        sockets.append(sock)
    return sockets


def fail(problems: list[str]) -> NoReturn:
    """Print each problem as one line on stderr and exit with status 1."""
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    sys.exit(1)


@cli.command()
def skills() -> None:
    """Print installed skill packages as JSON: distribution, version, skills."""
    try:
        described = installed_skills().describe()
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(described, indent=2))


@cli.command("new-skill")
@click.argument("name")
@click.option("--directory", "-d", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Where to create the package directory.")
@click.option("--description", help="One line describing the skill.")
def new_skill(name: str, directory: str, description: str | None) -> None:
    """Create the skill package robutler-skill-NAME: pyproject with entry point, module,
    README and a passing test."""
    from pathlib import Path

    from .scaffold import create_skill_package

    try:
        target = create_skill_package(name, Path(directory), description)
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created {target}")
    click.echo(f"next: cd {target} && pip install -e '.[test]' && pytest")


def main() -> None:
    """The ``robutler`` command, with the commands installed plugins add
    (``register_commands``, :mod:`robutler_server.plugins`)."""
    from .plugins import register_commands, server_plugins

    for problem in register_commands(server_plugins(), cli):
        click.echo(f"Warning: {problem}", err=True)
    cli()
