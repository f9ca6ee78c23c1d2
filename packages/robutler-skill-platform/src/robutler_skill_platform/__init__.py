"""Robutler platform: the ``auth``, ``payments``, ``discovery`` and ``nli`` skills, ``@pricing``
for tools, and the self-hosted platform service they talk to
(:mod:`robutler_skill_platform.service`: users, API keys, RS256 payment tokens, a double-entry
payments ledger and agent discovery on PostgreSQL).

Registered through the ``robutler`` entry point, as any skill package: an agents file names
the skills ``auth``, ``payments``, ``discovery`` and ``nli``.
"""

import os

from robutler_core import hookimpl
from robutler_core.errors import ConfigurationError

from .auth import AuthSkill
from .discovery import DiscoverySkill
from .nli import NLISkill
from .payments import PaymentRequired, PaymentSkill
from .pricing import PricingInfo, pricing

__all__ = ["AuthSkill", "DiscoverySkill", "NLISkill", "PaymentRequired", "PaymentSkill", "PricingInfo", "pricing"]


@hookimpl
def register_skills(register):
    register(AuthSkill, name="auth")
    register(PaymentSkill, name="payments")
    register(DiscoverySkill, name="discovery")
    register(NLISkill, name="nli")


WITH_PLATFORM = "ROBUTLER_WITH_PLATFORM"
"""Environment variable: when ``1``, ``register_routes`` mounts the platform service at ``/api``
of the app (``robutler serve --with-platform`` sets it)."""


@hookimpl
def register_commands(cli):
    """``robutler platform ...`` and ``robutler serve --with-platform``."""
    import click

    from .cli import platform

    cli.add_command(platform)
    serve = cli.commands.get("serve")
    if serve is not None:

        def enable(ctx, param, value):
            if value:
                os.environ[WITH_PLATFORM] = "1"

        serve.params.append(click.Option(
            ["--with-platform"], is_flag=True, expose_value=False, callback=enable,
            help="Also serve the Robutler platform API at /api (robutler-skill-platform).",
        ))


@hookimpl
def register_routes(app, agents):
    """Mount the platform service at ``/api`` when ``$ROBUTLER_WITH_PLATFORM`` is ``1``."""
    if os.environ.get(WITH_PLATFORM) != "1":
        return None
    if "api" in agents:
        raise ConfigurationError("an agent named 'api' would be shadowed by the platform API at /api")
    from .service import PlatformService

    service = PlatformService()
    app.include_router(service.router)
    app.state.platform = service
    return service.lifetime()
