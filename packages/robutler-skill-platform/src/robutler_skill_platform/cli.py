"""``robutler platform ...``: serve the platform service and administer it.

Added to the ``robutler`` command through the server's ``register_commands`` hook, with a
``--with-platform`` flag on ``robutler serve`` that mounts the service at ``/api`` beside the
agents (through ``register_routes``). Every command takes ``--dsn`` (else
``$ROBUTLER_POSTGRES_DSN``, else the embedded PostgreSQL under ``$ROBUTLER_DATA_DIR``); the
admin commands print one JSON object on stdout; an error exits with status 1 and one line on
stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from robutler_core.errors import RobutlerError

from .money import InvalidAmountError, to_micros

dsn_option = click.option(
    "--dsn", envvar="ROBUTLER_POSTGRES_DSN", metavar="DSN",
    help="PostgreSQL URL (default: $ROBUTLER_POSTGRES_DSN, else the embedded PostgreSQL).",
)


def _run(dsn: str | None, action: Callable[[Any], Awaitable[dict[str, Any]]]) -> None:
    """Open the store, run ``action(store)``, print its JSON; errors: one line, status 1."""
    from .service import open_store

    async def main() -> dict[str, Any]:
        store = await open_store(dsn)
        try:
            return await action(store)
        finally:
            await store.database.close()

    try:
        result = asyncio.run(main())
    except (RobutlerError, InvalidAmountError) as exc:
        click.echo(f"Error: {getattr(exc, 'message', exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # the database cannot be reached, ...
        click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result))


def _dollars(value: str, field: str) -> int:
    """``value`` dollars as micro-dollars; an error line and status 1 when it is not one."""
    try:
        return to_micros(value, field=field, allow_zero=False)
    except InvalidAmountError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


@click.group()
def platform() -> None:
    """The self-hosted Robutler platform: users, API keys, payment tokens, payments."""


@platform.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to bind.")
@click.option("--embedding-model", envvar="ROBUTLER_PLATFORM_EMBEDDING_MODEL", metavar="PROVIDER/MODEL",
              help="Embeds intents for discovery (e.g. local/all-MiniLM-L6-v2); default: text search.")
@dsn_option
def serve(host: str, port: int, embedding_model: str | None, dsn: str | None) -> None:
    """Serve the platform API at /api."""
    import uvicorn

    from .service import create_service_app

    uvicorn.run(create_service_app(dsn, embedding_model=embedding_model), host=host, port=port)


@platform.command("create-user")
@click.argument("name")
@click.option("--email")
@click.option("--role", type=click.Choice(["user", "admin"]), default="user", show_default=True)
@dsn_option
def create_user(name: str, email: str | None, role: str, dsn: str | None) -> None:
    """Create a user: {id, name, email, role}."""
    _run(dsn, lambda store: store.create_user(name, email, role))


@platform.command("create-key")
@click.argument("user")
@dsn_option
def create_key(user: str, dsn: str | None) -> None:
    """Create an API key for USER (id or name): {key, key_id, user_id}; the only time the key
    is shown."""
    _run(dsn, lambda store: store.create_key(user))


@platform.command("revoke-key")
@click.argument("key_id")
@dsn_option
def revoke_key(key_id: str, dsn: str | None) -> None:
    """Revoke an API key: {key_id, revoked}."""
    _run(dsn, lambda store: store.revoke_key(key_id))


@platform.command("register-agent")
@click.argument("name")
@click.option("--owner", required=True, help="The owning user (id or name).")
@dsn_option
def register_agent(name: str, owner: str, dsn: str | None) -> None:
    """Register agent NAME: {agent_id, name, owner_id}."""
    _run(dsn, lambda store: store.register_agent(name, owner))


@platform.command("add-credits")
@click.argument("user")
@click.argument("dollars")
@dsn_option
def add_credits(user: str, dollars: str, dsn: str | None) -> None:
    """Add DOLLARS to USER's balance: {user_id, balance}."""
    amount = _dollars(dollars, "DOLLARS")
    _run(dsn, lambda store: store.add_credits(user, amount))


@platform.command("mint-token")
@click.option("--user", required=True, help="The paying user (id or name).")
@click.option("--amount", required=True, help="Dollars taken from the user's balance.")
@click.option("--audience", required=True, help="The agent the token pays.")
@click.option("--max-depth", default=2, show_default=True, type=int, help="Delegation levels allowed.")
@click.option("--ttl", default=3600, show_default=True, type=float, help="Seconds until it expires.")
@dsn_option
def mint_token(user: str, amount: str, audience: str, max_depth: int, ttl: float, dsn: str | None) -> None:
    """Mint a payment token: {token, balance, audience, expires_at}."""
    micros = _dollars(amount, "--amount")

    async def mint(store: Any) -> dict[str, Any]:
        minted = await store.mint_token(user, micros, audience, max_depth=max_depth, ttl=ttl)
        return {k: minted[k] for k in ("token", "balance", "audience", "expires_at")}

    _run(dsn, mint)


@platform.command()
@click.option("--user", help="A user (id or name).")
@click.option("--token", help="A payment token.")
@dsn_option
def balance(user: str | None, token: str | None, dsn: str | None) -> None:
    """What USER or TOKEN can still spend, and what is locked: {balance, locked}."""
    if (user is None) == (token is None):
        click.echo("Error: give either --user or --token", err=True)
        sys.exit(1)
    _run(dsn, lambda store: store.balance(user_reference=user, token=token))
