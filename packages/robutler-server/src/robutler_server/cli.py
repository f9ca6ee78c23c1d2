"""The ``robutler`` command: ``robutler serve [AGENTS_FILE]``, ``robutler skills`` and
``robutler new-skill NAME``."""

from __future__ import annotations

import json
import logging
import os

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
def serve(agents_file: str | None, host: str, port: int, log_level: str) -> None:
    """Serve the agents of AGENTS_FILE (YAML), or a demo agent when none is given."""
    import uvicorn

    from .app import create_app
    from .config import load_agents

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(message)s")
    try:
        if agents_file:
            agents = load_agents(agents_file)
            logger.info("serving %d agent(s) from %s: %s", len(agents), agents_file,
                        ", ".join(a.name for a in agents))
        else:
            agent, line = demo_agent()
            agents = [agent]
            logger.info(line)
        app = create_app(agents)
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from None
    for agent in agents:
        logger.info("agent '%s' (model %s) at /%s/chat/completions", agent.name, agent.model_name, agent.name)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


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
    cli()
