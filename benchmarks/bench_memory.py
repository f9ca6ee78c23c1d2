"""Latency of the memory skills' queries against the same queries on the raw clients.

For each size (``--sizes``, default 10,000 and 100,000), bulk-loads that many facts and that
many 384-dimension vectors (random unit vectors: latency does not depend on what they mean),
spread over ``--users`` callers (50) of one agent, then measures one caller's queries:

- facts: ``LongTermMemorySkill.retrieve_facts`` called as the tool loop calls it (arguments
  validated by its :class:`~robutler_core.Tool`, the request's Context injected), against the
  skill's own SQL (``long_term._SEARCH``) on raw ``asyncpg``;
- vectors, once per backend side by side (``milvus``: Milvus Lite from a file, sealed and
  indexed as the skill leaves it; ``pgvector``: ``halfvec`` rows on the same PostgreSQL, with
  the HNSW index where the store's ``index: auto`` builds it, PostgreSQL's plan choosing the
  index or an exact scan (noted in the output); ``pgvector-exact``: the same with
  ``pg_index: none``): the tool
  ``VectorMemorySkill.search`` against the same search on a raw ``pymilvus`` client / raw
  ``asyncpg`` (the store's statement, the query vector sent through the same binary
  ``halfvec`` codec). The skill's query embedding is precomputed (an embeddings-only LLM skill that
  looks the vector up), so the figure is the search's; embedding a query with the real local
  model (``local/all-MiniLM-L6-v2``, when robutler-skill-memory[local] is installed) is
  timed on its own.

"Raw" on PostgreSQL is what a server using asyncpg directly does for each query: a connection
from the skill's own asyncpg pool (``async with pool.acquire() as connection``, so the same
connections, prepared statements and plans), the statement, the connection given back. The
"floor" is the same statement on one connection held for the whole run (no pool at all): the
least any query can cost, shown beside raw. Each query runs every way back to back (raw
first in even rounds, the reverse order in odd ones), so machine noise hits all alike;
p50/p99 are over every query of every round. "skill/raw p50" is the target's ratio (at most
1.2); "skill/floor p50" is shown too.

PostgreSQL is the embedded one (pgserver) in a temporary ``ROBUTLER_DATA_DIR`` unless
``--dsn`` names a server (its tables of the benchmark's agent are emptied first).

    python benchmarks/bench_memory.py [--sizes 10000,100000] [--rounds 5] [--queries 100]
                                      [--backends milvus,pgvector,pgvector-exact]
                                      [--milvus-index HNSW] [--interleaved] [--dsn URL] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from robutler_core import Agent, Context, LLMSkill  # noqa: E402

AGENT = "bench"
DIMENSION = 384
LIMIT = 10  # retrieve_facts' default
TOP_K = 5  # search's default
TARGET_RATIO = 1.2

# A vocabulary of 4,000 made-up words (each of a fact's ~10 words is one of them), so that a
# word occurs in a few of one user's facts, as in real memories, not in a third of them.
_SYLLABLES = "ka lo mi ne ru sa ti vo ba de fi go hu ja ke li mo nu pa re si to vu we".split()
WORDS = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES})
WORDS = random.Random(7).sample(WORDS, 4000)


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def unit_vector(rng: random.Random) -> list[float]:
    vector = [rng.gauss(0, 1) for _ in range(DIMENSION)]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


class PrecomputedEmbeddings(LLMSkill):
    """An embeddings-only LLM skill (prefix ``bench/``) that returns the vectors the benchmark
    prepared for its query texts: the skill's search is measured without the embedding."""

    model_prefixes: ClassVar[tuple[str, ...]] = ("bench",)
    vectors: ClassVar[dict[str, list[float]]] = {}

    async def initialize(self, agent: Any) -> None:
        return None

    async def embed(self, texts: list[str], model: str | None = None) -> list[list[float]]:
        return [self.vectors[text] for text in texts]

    async def chat_completion(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("embeddings only")

    async def chat_completion_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("embeddings only")


class Case:
    """One query measured two or three ways: ``raw`` (the client alone; on PostgreSQL a pool
    connection per query), ``skill`` (the tool) and, on PostgreSQL, ``floor`` (the statement on
    one connection held for the whole run)."""

    def __init__(self, name: str, raw: Callable[[int], Awaitable[Any]], skill: Callable[[int], Awaitable[Any]],
                 target_ms: float | None, floor: Callable[[int], Awaitable[Any]] | None = None) -> None:
        self.name, self.target_ms = name, target_ms
        self.runs = {"raw": raw, "skill": skill} | ({"floor": floor} if floor else {})
        self.times: dict[str, list[float]] = {kind: [] for kind in self.runs}

    async def measure(self, queries: int, raw_first: bool) -> None:
        """Each query once each way, back to back (so load changes hit all alike)."""
        order = list(self.runs.items())
        for i in range(queries):
            for kind, run in order if raw_first else order[::-1]:
                start = time.perf_counter()
                await run(i)
                self.times[kind].append(time.perf_counter() - start)


def user_id(index: int) -> str:
    return f"user-{index:02d}"


class Bench:
    """One size: the loaded stores, the agent with the skills, and the cases to measure."""

    def __init__(self, args: argparse.Namespace, size: int) -> None:
        self.args, self.size = args, size
        self.rng = random.Random(size)
        self.user = user_id(7)
        self.cases: list[Case] = []
        self.notes: list[str] = []
        self.closers: list[Callable[[], Awaitable[Any]]] = []

    async def agent(self, skills: dict[str, Any]) -> Agent:
        """An initialised agent named AGENT with ``skills`` (closed by :meth:`close`)."""
        agent = Agent(AGENT, model="test", skills=skills)
        await agent.initialize()
        self.closers.append(agent.close)
        return agent

    def tool(self, agent: Agent, name: str) -> tuple[Any, Context]:
        """The agent's tool ``name`` and a request Context of the measured user, to call it
        as the tool loop does: ``await tool.invoke(arguments, context=context)``."""
        matches = [t for t in agent.tools_for_scope("all") if t.name == name]
        if not matches:
            raise SystemExit(f"the agent has no tool {name!r}")
        return matches[0], Context(agent=agent, messages=[], peer_user_id=self.user)

    async def setup(self) -> None:
        from robutler_skill_memory.long_term import LongTermMemorySkill

        facts = LongTermMemorySkill({"dsn": self.args.dsn, "auto_recall": False})
        await self.facts(await self.agent({"long_term_memory": facts}), facts)
        for backend in self.args.backends:
            await self.vectors(backend)

    async def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()

    # -- facts -----------------------------------------------------------------------------
    async def facts(self, agent: Agent, skill: Any) -> None:
        from robutler_skill_memory import long_term

        database = skill.database
        started = time.perf_counter()
        async with database.acquire() as connection:
            await connection.execute("DELETE FROM robutler_facts WHERE agent = $1", AGENT)
            records, mine = [], []
            for i in range(self.size):
                key = f"{self.rng.choice(WORDS)}_{self.rng.choice(WORDS)}_{i}"
                value = sentence(self.rng, self.rng.randint(6, 14))
                records.append((AGENT, user_id(i % self.args.users), key, json.dumps(value), "{}", f"{key}\n{value}"))
                if records[-1][1] == self.user:
                    mine.append(value.split())
            await connection.copy_records_to_table(
                "robutler_facts", records=records,
                columns=["agent", "user_id", "key", "value", "metadata", "content"])
            # VACUUM merges the GIN indexes' pending lists, as autovacuum does after a bulk load;
            # a search scans them linearly until then.
            await connection.execute("VACUUM ANALYZE robutler_facts", timeout=3600)
        self.notes.append(f"{self.size} facts loaded (COPY) in {time.perf_counter() - started:.1f} s")
        # A word of one of the user's facts and a random word, as a question about a fact is.
        queries = [f"{self.rng.choice(self.rng.choice(mine))} {self.rng.choice(WORDS)}" for _ in range(self.args.queries)]
        tool, context = self.tool(agent, "retrieve_facts")
        raw, floor = await self._raw_postgres(database, long_term._SEARCH, lambda i: (AGENT, self.user, queries[i], LIMIT))

        async def through_skill(i: int) -> Any:
            return await tool.invoke({"query": queries[i], "limit": LIMIT}, context=context)

        same = [r["key"] for r in await raw(0)] == [f["key"] for f in await through_skill(0)]
        if not same:
            raise SystemExit("retrieve_facts and the raw query disagree")
        matched = statistics.mean([len(await raw(i)) for i in range(min(20, len(queries)))])
        self.notes.append(f"facts: {matched:.1f} of {LIMIT} results per query on average")
        self.cases.append(Case("facts: retrieve_facts (PostgreSQL FTS + trigram)", raw, through_skill, 5.0, floor))

    # -- vectors ---------------------------------------------------------------------------
    async def vectors(self, backend: str) -> None:
        import numpy as np

        from robutler_skill_memory.identity import partition
        from robutler_skill_memory.milvus_store import MilvusStore
        from robutler_skill_memory.vector import VectorMemorySkill

        config: dict[str, Any] = {"backend": backend, "embedding_model": "bench/precomputed",
                                  "dimension": DIMENSION, "collection": f"bench_{backend.replace('-', '_')}_{self.size}"}
        if backend == "pgvector-exact":  # the same store without its HNSW index: exact scans
            config.update(backend="pgvector", pg_index="none")
        if config["backend"] == "pgvector":
            config["dsn"] = self.args.dsn
        elif self.args.milvus_index:
            config["index_type"] = self.args.milvus_index
        skill = VectorMemorySkill(config)
        agent = await self.agent({"vector_memory": skill, "embeddings": PrecomputedEmbeddings({"model": "precomputed"})})
        store = skill.store
        generator = np.random.default_rng(self.size)
        started = time.perf_counter()
        per_user = self.size // self.args.users
        for user in range(self.args.users):  # one store.add per user: what add_content calls
            matrix = generator.standard_normal((per_user, DIMENSION), dtype=np.float32)
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
            owner = partition(Context(agent=agent, messages=[], peer_user_id=user_id(user)))
            rows = [{"id": uuid.uuid4().hex, "text": sentence(self.rng, 12), "metadata": {"n": i},
                     "created_at": int(time.time() * 1000), "vector": vector}
                    for i, vector in enumerate(matrix.tolist())]
            await self._bulk_add(store, owner, rows)
        await self._after_load(store)
        self.notes.append(f"{backend}: {self.size} vectors loaded in {time.perf_counter() - started:.1f} s")
        texts = [f"query {i}" for i in range(self.args.queries)]
        query_vectors = generator.standard_normal((len(texts), DIMENSION), dtype=np.float32)
        query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
        PrecomputedEmbeddings.vectors.update(zip(texts, query_vectors.tolist(), strict=True))
        tool, context = self.tool(agent, "search")
        owner = partition(context)
        floor = None
        if isinstance(store, MilvusStore):
            raw = self._raw_milvus(store, owner, query_vectors.tolist())
            target = 50.0
        else:
            from robutler_skill_memory.milvus_store import owner_key

            key, vectors = owner_key(owner), query_vectors.tolist()
            # the store's statement; the query vector sent as a binary halfvec, as the store
            # sends it (the codec the pool's connections have)
            raw, floor = await self._raw_postgres(store.database, store.search_sql, lambda i: (key, vectors[i], TOP_K))
            target = 2.0

        async def through_skill(i: int) -> Any:
            return await tool.invoke({"query": texts[i], "top_k": TOP_K}, context=context)

        raw_ids = [hit["id"] for hit in await raw(0)]
        skill_result = await through_skill(0)
        skill_hits = skill_result.get("results", skill_result) if isinstance(skill_result, dict) else skill_result
        if raw_ids != [hit["id"] for hit in skill_hits] or len(raw_ids) != TOP_K:
            raise SystemExit(f"{backend}: search and the raw query disagree: {raw_ids} {skill_hits}")
        if isinstance(store, MilvusStore):
            name = f"Milvus Lite (sealed, {store.index_type})"
        else:
            name = "pgvector (halfvec), HNSW index" if store.index == "hnsw" else "pgvector (halfvec), no index"
            self.notes.append(f"{backend}: the search's plan (generic, as the store runs it): {await self._plan(store, owner)}")
        self.cases.append(Case(f"vectors: search top {TOP_K}, {name}", raw, through_skill, target, floor))

    async def _bulk_add(self, store: Any, owner: tuple[str, str], rows: list[dict[str, Any]]) -> None:
        from robutler_skill_memory.milvus_store import MilvusStore

        if isinstance(store, MilvusStore):
            await store.add(owner, rows)
            return
        # pgvector: COPY (the store's executemany of 100k vectors takes minutes); the rows are
        # the ones PgvectorStore.add writes.
        from robutler_skill_memory.milvus_store import owner_key

        await store._ensure(DIMENSION)
        async with store.database.acquire() as connection:
            if not getattr(self, "_index_dropped", False):
                await connection.execute(f"DELETE FROM {store.table}")
                await connection.execute(f"DROP INDEX IF EXISTS {store.table}_embedding")
                self._index_dropped = True
            # the store's connections send halfvec in pgvector's binary format (its codec)
            await connection.copy_records_to_table(
                store.table, columns=["id", "owner", "text", "metadata", "embedding"],
                records=[(row["id"], owner_key(owner), row["text"], json.dumps(row["metadata"]), row["vector"])
                         for row in rows])

    async def _after_load(self, store: Any) -> None:
        from robutler_skill_memory.milvus_store import MilvusStore

        if isinstance(store, MilvusStore):
            return
        self._index_dropped = False
        started = time.perf_counter()
        async with store.database.acquire() as connection:
            if self.args.interleaved:  # each caller's rows spread over the table, as rows added over time are
                await connection.execute(f"CREATE TEMP TABLE shuffled AS SELECT * FROM {store.table} ORDER BY md5(id)")
                await connection.execute(f"TRUNCATE {store.table}")
                await connection.execute(f"INSERT INTO {store.table} SELECT * FROM shuffled")
                await connection.execute("DROP TABLE shuffled")
            if store.index == "hnsw":
                await connection.execute("SET maintenance_work_mem = '512MB'")
                await connection.execute(  # the index PgvectorStore creates
                    f"CREATE INDEX {store.table}_embedding ON {store.table}"
                    " USING hnsw (embedding public.halfvec_cosine_ops)", timeout=3600)
                self.notes.append(f"pgvector: HNSW index built in {time.perf_counter() - started:.1f} s")
            else:
                self.notes.append("pgvector: no HNSW index (pg_index: none, or auto where pgvector cannot run it): "
                                  "exact scans of the user's rows")
            # VACUUM sets the visibility map, as autovacuum does after a bulk insert: an
            # index-only scan of the covering owner index reads the table only for rows added
            # since the last vacuum
            await connection.execute(f"VACUUM ANALYZE {store.table}", timeout=3600)

    async def _plan(self, store: Any, owner: tuple[str, str]) -> str:
        """How PostgreSQL runs the store's search (its generic plan): the HNSW index or an exact
        scan of the caller's rows."""
        from robutler_skill_memory.milvus_store import owner_key

        async with store.database.acquire() as connection:
            await connection.execute(f"PREPARE bench_search(text, public.halfvec, int) AS {store.search_sql}")
            try:
                vector = "'[" + ",".join(["0.05"] * DIMENSION) + "]'"  # EXPLAIN EXECUTE takes no parameters
                plan = [row[0] for row in await connection.fetch(
                    f"EXPLAIN (COSTS OFF) EXECUTE bench_search('{owner_key(owner)}', {vector}, {TOP_K})")]
            finally:
                await connection.execute("DEALLOCATE bench_search")
        if any("_embedding" in line and "Index Scan" in line for line in plan):
            return "HNSW index scan (iterative)"
        if any("Index Only Scan" in line and "_owner_covering" in line for line in plan):
            return "exact scan of the user's rows (index-only scan of the covering owner index, top-N sort)"
        return "exact scan of the user's rows (owner index and table, top-N sort)"

    def _raw_milvus(self, store: Any, owner: tuple[str, str], vectors: list[list[float]]) -> Callable[[int], Awaitable[Any]]:
        """The search MilvusStore.search makes, on its pymilvus client, called directly."""
        from robutler_skill_memory.milvus_store import owner_key

        client, key = store._client, owner_key(owner)
        bucket = store._bucket(key) if hasattr(store, "_bucket") else {}  # Lite: the owner's partition-key bucket

        async def raw(i: int) -> Any:
            hits = client.search(store.collection, [vectors[i]], limit=TOP_K, filter=f'owner == "{key}"',
                                 output_fields=["text", "metadata"],
                                 search_params={"metric_type": "COSINE"}, **bucket)
            return hits[0]

        return raw

    async def _raw_postgres(self, database: Any, query: str, arguments: Callable[[int], tuple[Any, ...]],
                            ) -> tuple[Callable[[int], Awaitable[Any]], Callable[[int], Awaitable[Any]]]:
        """``query`` on raw asyncpg, with the skill's own pool (its connections' settings,
        codecs, prepared statements and plans): ``raw`` as a server using asyncpg does it, a
        connection from the pool per query (``async with pool.acquire()``); ``floor`` on one
        connection held for the whole run."""
        pool = database.pool
        held = await pool.acquire()
        self.closers.append(lambda: pool.release(held))

        async def raw(i: int) -> Any:
            async with pool.acquire() as connection:
                return await connection.fetch(query, *arguments(i))

        async def floor(i: int) -> Any:
            return await held.fetch(query, *arguments(i))

        return raw, floor


async def embedding_times(queries: int) -> str:
    """p50/p99 of embedding one query with the local model, or why it was not timed."""
    try:
        from robutler_core.embeddings import Embedder
    except ImportError as exc:
        return f"embedding not timed: {exc}"
    embedder = Embedder()
    try:
        for i in range(5):  # warm up
            await embedder.embed([f"warm up {i}"], "local/all-MiniLM-L6-v2")
        times = []
        for i in range(queries):
            start = time.perf_counter()
            await embedder.embed([f"what did I say about the {WORDS[i]} meeting?"], "local/all-MiniLM-L6-v2")
            times.append(time.perf_counter() - start)
    except Exception as exc:  # the [local] extra not installed, no torch...
        return f"embedding not timed: {type(exc).__name__}: {exc}"
    finally:
        await embedder.close()
    return (f"embedding one query with local/all-MiniLM-L6-v2 (CPU): p50 {statistics.median(times) * 1e3:.1f} ms, "
            f"p99 {percentile(times, 0.99) * 1e3:.1f} ms ({queries} queries; not included above)")


def report(size: int, cases: list[Case]) -> list[str]:
    lines = []
    for case in cases:
        raw, skill, floor = case.times["raw"], case.times["skill"], case.times.get("floor")
        ratio = statistics.median(skill) / statistics.median(raw)
        target = f"< {case.target_ms:g} ms" if case.target_ms else ""
        held = (f"{statistics.median(floor) * 1e3:10.2f} | {statistics.median(skill) / statistics.median(floor):15.2f}"
                if floor else f"{'-':>10} | {'-':>15}")
        lines.append(
            f"| {size:,} | {case.name:52} | {statistics.median(raw) * 1e3:7.2f} | {percentile(raw, 0.99) * 1e3:7.2f} "
            f"| {statistics.median(skill) * 1e3:9.2f} | {percentile(skill, 0.99) * 1e3:9.2f} "
            f"| {ratio:13.2f} | {held} | {target:10} |")
    return lines


async def run_size(args: argparse.Namespace, size: int) -> list[str]:
    bench = Bench(args, size)
    try:
        await bench.setup()
        for case in bench.cases:  # warm up: plans, caches, connections
            await case.measure(min(10, args.queries), raw_first=True)
            case.times = {kind: [] for kind in case.runs}
        for round_ in range(args.rounds):
            for case in bench.cases:
                await case.measure(args.queries, raw_first=round_ % 2 == 0)
    finally:
        await bench.close()
    for note in bench.notes:
        print(f"  {note}", file=sys.stderr)
    return report(size, bench.cases)


async def main() -> None:
    # SIGTERM cancels the run like Ctrl-C does, so the embedded PostgreSQL is stopped.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="facts and vectors to load, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=100, help="queries per round, each way")
    parser.add_argument("--users", type=int, default=50, help="callers the rows are spread over")
    parser.add_argument("--backends", default="milvus,pgvector,pgvector-exact",
                        help="vector_memory backends to measure (pgvector-exact: pgvector with pg_index: none)")
    parser.add_argument("--milvus-index", default=None, help="vector_memory's index_type on Milvus (default: the skill's)")
    parser.add_argument("--interleaved", action="store_true",
                        help="pgvector: rows in random order, not each caller's together (as loaded)")
    parser.add_argument("--dsn", default=None, help="a PostgreSQL server (default: the embedded one)")
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 2 rounds of 30 queries: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.queries = "2000", 2, 30
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with contextlib.ExitStack() as stack:
        if not os.environ.get("ROBUTLER_DATA_DIR"):
            os.environ["ROBUTLER_DATA_DIR"] = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-"))
        print(f"data in {os.environ['ROBUTLER_DATA_DIR']}; {args.rounds} rounds x {args.queries} queries each way; "
              f"one user among {args.users}", file=sys.stderr)
        lines = ["| rows | query | raw p50 ms | raw p99 ms | skill p50 ms | skill p99 ms | skill/raw p50 "
                 "| raw, one held connection (floor) p50 ms | skill/floor p50 | target p50 |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for size in args.sizes:
            lines.extend(await run_size(args, size))
        print("\n".join(lines))
        print(await embedding_times(min(args.queries, 50)))


if __name__ == "__main__":
    asyncio.run(main())
