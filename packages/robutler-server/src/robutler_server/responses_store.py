"""Where stored responses live: bounded process memory, or PostgreSQL shared by every worker.

A :class:`StoredResponse` holds a ``response`` object, its input items (what
``GET /responses/{id}/input_items`` lists) and the conversation as chat messages (what a
response continuing it with ``previous_response_id`` starts from), with the agent that
answered and the caller who asked (``owner``: ``context.peer_user_id`` as the agent's
``on_connection`` hooks set it; ``None`` for an anonymous caller). The store does not judge
access: the routes compare ``agent`` and ``owner`` and answer 404 for someone else's response.

:func:`response_store` picks the store: :class:`MemoryResponseStore` (the default: the most
recent ``max_responses``, lost at a restart) or, given a DSN, :class:`PostgresResponseStore`
(asyncpg, imported only then: ``pip install 'robutler-server[postgres]'``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from robutler_core.errors import ConfigurationError

DEFAULT_MAX_RESPONSES = 1000
DEFAULT_TABLE = "robutler_responses"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


@dataclass
class StoredResponse:
    """One stored response; ``created_at`` in Unix seconds (the response's own)."""

    id: str
    agent: str
    owner: str | None
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    messages: list[dict[str, Any]]

    @property
    def created_at(self) -> int:
        return int(self.response.get("created_at") or 0)


class ResponseStore(Protocol):
    """What the Responses routes need of a store. The store is an async context manager,
    entered at each start-up of the app and exited at its shutdown (connections open and close
    there; a store used without them connects at its first use)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> None: ...

    async def put(self, record: StoredResponse) -> None: ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def delete(self, response_id: str) -> bool: ...


class MemoryResponseStore:
    """The ``max_responses`` most recently stored responses, in this process only: a restart
    loses them and other workers do not see them (give the server a DSN for that)."""

    def __init__(self, max_responses: int = DEFAULT_MAX_RESPONSES) -> None:
        if not isinstance(max_responses, int) or max_responses < 1:
            raise ConfigurationError(f"max_responses must be a positive integer, got {max_responses!r}")
        self.max_responses = max_responses
        self._records: OrderedDict[str, StoredResponse] = OrderedDict()

    async def __aenter__(self) -> MemoryResponseStore:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        return None

    async def put(self, record: StoredResponse) -> None:
        self._records[record.id] = record
        self._records.move_to_end(record.id)
        while len(self._records) > self.max_responses:
            self._records.popitem(last=False)

    async def get(self, response_id: str) -> StoredResponse | None:
        return self._records.get(response_id)

    async def delete(self, response_id: str) -> bool:
        return self._records.pop(response_id, None) is not None


class PostgresResponseStore:
    """Responses in a PostgreSQL table (created when missing), shared by every worker and
    kept across restarts. ``dsn``: a libpq URI (``postgresql://user@host:5432/db``);
    ``table``: its name, optionally schema-qualified (``schema.table``).

    Raises ConfigurationError for a bad table name, when asyncpg is not installed, or (at
    start-up) when the database cannot be reached, naming the host without the password.
    """

    def __init__(self, dsn: str, table: str = DEFAULT_TABLE) -> None:
        if not _IDENTIFIER.match(table):
            raise ConfigurationError(f"response table name {table!r} is not a plain SQL identifier")
        try:
            import asyncpg  # noqa: F401  (an optional dependency)
        except ImportError:
            raise ConfigurationError(
                "a PostgreSQL DSN for stored responses needs asyncpg: pip install 'robutler-server[postgres]'"
            ) from None
        self.dsn = dsn
        self.table = ".".join(f'"{part}"' for part in table.split("."))
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> PostgresResponseStore:
        await self._connected()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _connected(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                import asyncpg

                try:
                    pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=10)
                except (OSError, asyncpg.PostgresError) as exc:
                    raise ConfigurationError(
                        f"cannot reach the PostgreSQL server for stored responses ({_where(self.dsn)}): {exc}"
                    ) from exc
                async with pool.acquire() as connection, connection.transaction():
                    # One worker creates the table; the others wait for it (a race on
                    # CREATE TABLE IF NOT EXISTS fails with a duplicate type otherwise).
                    await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
                    await connection.execute(
                        f"CREATE TABLE IF NOT EXISTS {self.table} ("
                        " id text PRIMARY KEY, agent text NOT NULL, owner text,"
                        " created_at bigint NOT NULL, response jsonb NOT NULL,"
                        " input_items jsonb NOT NULL, messages jsonb NOT NULL)"
                    )
                self._pool = pool
        return self._pool

    async def put(self, record: StoredResponse) -> None:
        pool = await self._connected()
        await pool.execute(
            f"INSERT INTO {self.table} (id, agent, owner, created_at, response, input_items, messages)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET response = EXCLUDED.response",
            record.id, record.agent, record.owner, record.created_at,
            json.dumps(record.response), json.dumps(record.input_items), json.dumps(record.messages),
        )

    async def get(self, response_id: str) -> StoredResponse | None:
        pool = await self._connected()
        row = await pool.fetchrow(
            f"SELECT id, agent, owner, response, input_items, messages FROM {self.table} WHERE id = $1",
            response_id,
        )
        if row is None:
            return None
        return StoredResponse(
            id=row["id"], agent=row["agent"], owner=row["owner"], response=json.loads(row["response"]),
            input_items=json.loads(row["input_items"]), messages=json.loads(row["messages"]),
        )

    async def delete(self, response_id: str) -> bool:
        pool = await self._connected()
        return await pool.execute(f"DELETE FROM {self.table} WHERE id = $1", response_id) == "DELETE 1"


def response_store(dsn: str | None = None, *, table: str = DEFAULT_TABLE,
                   max_responses: int = DEFAULT_MAX_RESPONSES) -> ResponseStore:
    """:class:`PostgresResponseStore` for a DSN, else :class:`MemoryResponseStore`."""
    if dsn:
        return PostgresResponseStore(dsn, table)
    return MemoryResponseStore(max_responses)


def _where(dsn: str) -> str:
    """``host:port/db`` of a DSN, never its password."""
    match = re.match(r"^\w+://(?:[^@/]*@)?([^/?]*)(/[^?]*)?", dsn)
    return (match.group(1) + (match.group(2) or "")) if match else "the DSN given"
