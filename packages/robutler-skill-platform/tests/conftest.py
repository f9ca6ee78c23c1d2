"""Fixtures of the platform package's tests.

``platform_dsn`` (parametrized): a PostgreSQL DSN whose ``search_path`` is a fresh schema,
dropped after the test: on the session's embedded PostgreSQL (pgserver, in a temporary data
directory) and, when ``ROBUTLER_TEST_POSTGRES_DSN`` is set, on that server too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest

from robutler_skill_memory import postgres

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


@pytest.fixture(params=["embedded", "server"])
async def platform_dsn(request: pytest.FixtureRequest):
    if request.param == "server":
        if SERVER_DSN is None:
            pytest.skip("ROBUTLER_TEST_POSTGRES_DSN is not set (no PostgreSQL server to test against)")
        base = SERVER_DSN
    else:
        base = request.getfixturevalue("embedded_platform_postgres")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    await _admin(base, f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}search_path={schema},public"
    finally:
        await asyncio.wait_for(_admin(base, f"DROP SCHEMA IF EXISTS {schema} CASCADE"), 30)
