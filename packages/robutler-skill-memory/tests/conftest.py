"""Shared fixtures of the memory package's tests.

``ROBUTLER_DATA_DIR`` points to a temporary directory for the whole test session (no test
writes to the user's data directory), and one embedded PostgreSQL serves the session (started
by the first test that needs it, about a second, and held until the session ends, so skills
closing between tests do not stop it).

``postgres`` (parametrized): a :class:`PostgresTarget` per test: the embedded PostgreSQL, and,
when ``ROBUTLER_TEST_POSTGRES_DSN`` is set, that server too (``.ci/run`` sets it when a
PostgreSQL answers on 127.0.0.1:5432). Each test gets its own schema (``target.dsn`` sets the
``search_path`` to it, then ``public`` for the extensions), dropped afterwards, so runs and
tests never see each other's rows.

Loads ``memory_test_helpers.py`` (this directory) as the module ``memory_test_helpers``, for the
test modules to import (with ``--import-mode=importlib`` they cannot import files beside them).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from robutler_core import postgres


def _load_helpers():
    spec = importlib.util.spec_from_file_location(
        "memory_test_helpers", Path(__file__).with_name("memory_test_helpers.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


helpers = sys.modules.get("memory_test_helpers") or _load_helpers()


def private_data_dir() -> Path:
    """A new temporary directory for a data directory, outside pytest's ``tmp_path``: as root,
    pgserver runs PostgreSQL as the user ``pgserver`` and opens the data directory's parents
    to it, which pytest takes back (it makes /tmp/pytest-of-<user> private again whenever a
    pytest session starts). Short, so that PostgreSQL's socket fits there."""
    return Path(tempfile.mkdtemp(prefix="robutler-test-"))


@pytest.fixture(scope="session", autouse=True)
def memory_data_dir():
    """``$ROBUTLER_DATA_DIR`` = a session temporary directory (restored at the end)."""
    path = private_data_dir()
    previous = os.environ.get("ROBUTLER_DATA_DIR")
    previous_dsn = os.environ.pop("ROBUTLER_POSTGRES_DSN", None)
    os.environ["ROBUTLER_DATA_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("ROBUTLER_DATA_DIR", None)
    else:
        os.environ["ROBUTLER_DATA_DIR"] = previous
    if previous_dsn is not None:
        os.environ["ROBUTLER_POSTGRES_DSN"] = previous_dsn
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def own_data_dir(monkeypatch: pytest.MonkeyPatch):
    """``$ROBUTLER_DATA_DIR`` of this test only (its own embedded PostgreSQL), removed after."""
    path = private_data_dir()
    monkeypatch.setenv("ROBUTLER_DATA_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_postgres(memory_data_dir: Path):
    """The DSN of the session's embedded PostgreSQL (``postgres.embedded_data_dir()``), held
    open until the session ends."""
    pgdata = postgres.embedded_data_dir()
    dsn = postgres._acquire_embedded(pgdata)
    yield dsn
    postgres._release_embedded(pgdata)


@dataclass
class PostgresTarget:
    """One PostgreSQL to test against: ``kind`` ("embedded" or "server"), ``dsn`` (with this
    test's ``search_path``), ``schema``, ``base_dsn`` (without it)."""

    kind: str
    dsn: str
    schema: str
    base_dsn: str


@pytest.fixture(params=["embedded", "server"])
async def postgres_target(request: pytest.FixtureRequest):
    """A :class:`PostgresTarget` with a fresh schema, dropped after the test."""
    if request.param == "server":
        if helpers.SERVER_DSN is None:
            pytest.skip("ROBUTLER_TEST_POSTGRES_DSN is not set (no PostgreSQL server to test against)")
        base = helpers.SERVER_DSN
    else:
        base = request.getfixturevalue("embedded_postgres")
    async with helpers.fresh_schema(base) as schema:
        yield PostgresTarget(request.param, helpers.with_search_path(base, schema), schema, base)
