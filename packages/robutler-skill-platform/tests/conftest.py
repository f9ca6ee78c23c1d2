"""Fixtures of the platform package's tests.

``world``: the platform service served on a loopback port over ``platform_dsn``, with an
agent owner (olivia, owning the agents ``shop`` and ``helper``), a payer (paul, 10 dollars of
credits), their API keys, and a store in the test's event loop for what an admin does.

``platform_dsn`` (parametrized): a PostgreSQL DSN whose ``search_path`` is a fresh schema,
dropped after the test: on the session's embedded PostgreSQL (pgserver, in a temporary data
directory) and, when ``ROBUTLER_TEST_POSTGRES_DSN`` is set, on that server too.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from robutler_server.testing import serve_in_thread
from robutler_core import postgres
from robutler_skill_platform.money import to_micros
from robutler_skill_platform.service import create_service_app, open_store

SERVER_DSN = os.environ.get("ROBUTLER_TEST_POSTGRES_DSN") or None


@pytest.fixture(scope="session")
def embedded_platform_postgres():
    """The DSN of an embedded PostgreSQL of this session (its own data directory)."""
    path = Path(tempfile.mkdtemp(prefix="robutler-platform-test-"))
    dsn = postgres._acquire_embedded(path / "postgres")
    yield dsn
    postgres._release_embedded(path / "postgres")
    shutil.rmtree(path, ignore_errors=True)


async def _admin(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def _fresh_schema(base: str):
    schema = f"test_{uuid.uuid4().hex[:12]}"
    await _admin(base, f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}search_path={schema},public"
    finally:
        await asyncio.wait_for(_admin(base, f"DROP SCHEMA IF EXISTS {schema} CASCADE"), 30)


@pytest.fixture(params=["embedded", "server"])
async def platform_dsn(request: pytest.FixtureRequest):
    if request.param == "server":
        if SERVER_DSN is None:
            pytest.skip("ROBUTLER_TEST_POSTGRES_DSN is not set (no PostgreSQL server to test against)")
        base = SERVER_DSN
    else:
        base = request.getfixturevalue("embedded_platform_postgres")
    async with _fresh_schema(base) as dsn:
        yield dsn


@pytest.fixture
async def one_platform_dsn(request: pytest.FixtureRequest):
    """One DSN with a fresh schema, for the slow multi-process tests: the server's when
    ``ROBUTLER_TEST_POSTGRES_DSN`` is set, else the embedded PostgreSQL's."""
    base = SERVER_DSN or request.getfixturevalue("embedded_platform_postgres")
    async with _fresh_schema(base) as dsn:
        yield dsn


@dataclass
class World:
    store: object
    url: str
    owner: dict
    owner_key: str
    payer: dict
    payer_key: str

    def client(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def mint(self, dollars: str, audience: str = "shop", **options) -> dict:
        return await self.store.mint_token(self.payer["id"], to_micros(dollars), audience, **options)

    async def ledger_is_balanced(self) -> None:
        """Every transaction sums to zero, and every account's balance is the sum of its entries."""
        async with self.store.database.acquire() as connection:
            unbalanced = await connection.fetch(
                "SELECT transaction_id FROM platform_entries GROUP BY transaction_id HAVING sum(amount) <> 0"
            )
            drifted = await connection.fetch(
                "SELECT a.id FROM platform_accounts a LEFT JOIN platform_entries e ON e.account_id = a.id "
                "GROUP BY a.id, a.balance HAVING a.balance <> coalesce(sum(e.amount), 0)"
            )
        assert unbalanced == [] and drifted == []


@pytest.fixture
async def world(platform_dsn):
    async with _world(platform_dsn) as made:
        yield made


@pytest.fixture
async def one_world(one_platform_dsn):
    """:func:`world` on :func:`one_platform_dsn`."""
    async with _world(one_platform_dsn) as made:
        yield made


@asynccontextmanager
async def _world(platform_dsn):
    store = await open_store(platform_dsn, issuer="https://platform.test")
    owner = await store.create_user("olivia", email="olivia@example.com")
    payer = await store.create_user("paul")
    await store.register_agent("shop", "olivia")
    await store.register_agent("helper", "olivia")
    await store.add_credits("paul", to_micros("10"))
    owner_key = (await store.create_key("olivia"))["key"]
    payer_key = (await store.create_key("paul"))["key"]
    app = create_service_app(platform_dsn, issuer="https://platform.test")
    try:
        with serve_in_thread(app, startup_timeout=30) as url:
            yield World(store, url, owner, owner_key, payer, payer_key)
    finally:
        await store.database.close()
