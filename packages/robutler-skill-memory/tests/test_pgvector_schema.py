"""PgvectorStore's schema versions on the embedded PostgreSQL: a table of an earlier version
gets the covering owner index when a newer store opens it, searches stay each caller's exact
top k (rows spread over the table, rows added since the last vacuum), the exact search is an
index-only scan, and dimensions too large for a B-tree entry keep the plain owner index."""

from __future__ import annotations

import random

import asyncpg
import numpy as np
import pytest

from robutler_core.postgres import connect
from robutler_skill_memory.milvus_store import owner_key
from robutler_skill_memory.pgvector_store import COVERING_MAX_DIMENSION, PgvectorStore

from memory_test_helpers import fresh_schema, with_search_path

USERS = [("agent", f"user{i}") for i in range(4)]


def rows(rng: random.Random, count: int, dimension: int, prefix: str) -> list[dict]:
    return [{"id": f"{prefix}{i:04d}", "text": f"text {prefix}{i}", "metadata": {"n": i}, "created_at": 0,
             "vector": [rng.uniform(-1, 1) for _ in range(dimension)]} for i in range(count)]


def exact_top(stored: dict[str, list[float]], query: list[float], k: int) -> list[tuple[str, float]]:
    """The ``k`` (id, cosine distance) nearest to ``query``, computed on the float16 vectors
    pgvector keeps (ties by id)."""
    q = np.asarray(query, dtype=np.float32).astype(np.float16).astype(np.float64)
    distance = {}
    for key, vector in stored.items():
        v = np.asarray(vector, dtype=np.float32).astype(np.float16).astype(np.float64)
        distance[key] = 1 - float(v @ q) / (np.linalg.norm(v) * np.linalg.norm(q))
    return sorted(distance.items(), key=lambda item: (item[1], item[0]))[:k]


async def indexes(connection: asyncpg.Connection, schema: str) -> dict[str, str]:
    return {r["indexname"]: r["indexdef"] for r in await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'robutler_memory'", schema)}


async def test_a_table_of_version_1_gets_the_covering_index_and_searches_stay_exact(embedded_postgres):
    rng = random.Random(3)
    dimension = 16
    async with fresh_schema(embedded_postgres) as schema:
        dsn = with_search_path(embedded_postgres, schema)
        # a database as an earlier release left it: version 1 of the table, rows of four
        # callers added in turns (each caller's rows spread over the table)
        database = await connect(dsn, name="test")
        try:
            await database.migrate("vector", ["CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public"])
            await database.migrate("vector:robutler_memory", PgvectorStore(dsn).migrations(dimension)[:1])
            stored: dict[tuple[str, str], dict[str, list[float]]] = {user: {} for user in USERS}
            async with database.acquire() as connection:
                for i in range(100):
                    for n, user in enumerate(USERS):
                        vector = [rng.uniform(-1, 1) for _ in range(dimension)]
                        stored[user][f"u{n}-{i:03d}"] = vector
                        await connection.execute(
                            "INSERT INTO robutler_memory (id, owner, text, embedding) VALUES ($1, $2, $3, $4::text::public.halfvec)",
                            f"u{n}-{i:03d}", owner_key(user), f"text {i}", "[" + ",".join(map(repr, vector)) + "]")
                assert set(await indexes(connection, schema)) == {"robutler_memory_pkey", "robutler_memory_owner"}
        finally:
            await database.close()

        store = PgvectorStore(dsn, index="none")
        await store.open()
        try:
            assert store.dimension == dimension
            async with store.database.acquire() as connection:
                found = await indexes(connection, schema)
                assert set(found) == {"robutler_memory_pkey", "robutler_memory_owner_covering"}
                assert "(owner) INCLUDE (id, embedding)" in found["robutler_memory_owner_covering"]
                assert await connection.fetchval(
                    "SELECT max(version) FROM robutler_migrations WHERE namespace = 'vector:robutler_memory'") == 2
                await connection.execute("VACUUM ANALYZE robutler_memory")  # as autovacuum would
                await connection.execute(f"PREPARE exact(text, public.halfvec, int) AS {store.exact_search_sql}")
                plan = "\n".join(r[0] for r in await connection.fetch(
                    "EXPLAIN (COSTS OFF) EXECUTE exact('%s', '[%s]', 5)" % (owner_key(USERS[0]), ",".join(["0.5"] * dimension))))
                await connection.execute("DEALLOCATE exact")
            assert "Index Only Scan using robutler_memory_owner_covering" in plan, plan

            for user in USERS:
                query = [rng.uniform(-1, 1) for _ in range(dimension)]
                hits = await store.search(user, query, 7)
                assert [h["id"] for h in hits] == [key for key, _ in exact_top(stored[user], query, 7)]

            # rows added after the vacuum (not yet all-visible: read from the table too)
            added = rows(rng, 30, dimension, "new")
            await store.add(USERS[1], added)
            stored[USERS[1]].update({row["id"]: row["vector"] for row in added})
            for _ in range(5):
                query = [rng.uniform(-1, 1) for _ in range(dimension)]
                hits = await store.search(USERS[1], query, 10)
                expected = exact_top(stored[USERS[1]], query, 10)
                assert [h["id"] for h in hits] == [key for key, _ in expected]
                assert [h["score"] for h in hits] == pytest.approx([1 - d for _, d in expected], abs=1e-4)
        finally:
            await store.close()


@pytest.mark.parametrize("dimension", [COVERING_MAX_DIMENSION, 1536])
async def test_dimensions_too_large_for_a_btree_entry_keep_the_plain_owner_index(embedded_postgres, dimension):
    rng = random.Random(dimension)
    async with fresh_schema(embedded_postgres) as schema:
        store = PgvectorStore(with_search_path(embedded_postgres, schema), index="none")
        await store.open()
        try:
            added = rows(rng, 3, dimension, "r")
            await store.add(USERS[0], added)  # a row of the largest covered dimension fits its entry
            async with store.database.acquire() as connection:
                found = set(await indexes(connection, schema))
            covered = dimension <= COVERING_MAX_DIMENSION
            assert ("robutler_memory_owner_covering" in found) is covered
            assert ("robutler_memory_owner" in found) is not covered
            hits = await store.search(USERS[0], added[1]["vector"], 2)
            assert hits[0]["id"] == "r0001" and hits[0]["score"] == pytest.approx(1, abs=1e-3)
            assert await store.search(USERS[1], added[1]["vector"], 2) == []
        finally:
            await store.close()
