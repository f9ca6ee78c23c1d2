"""vector_memory through an agent's tool loop (a scripted model calls the tools), on Milvus Lite
(a temporary file) and pgvector (the embedded PostgreSQL and, when ROBUTLER_TEST_POSTGRES_DSN is
set, that server), with the real local all-MiniLM-L6-v2 model."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from robutler_core import LLMSkill
from robutler_core.errors import ConfigurationError
from robutler_core.plugins import SkillRegistry
from robutler_skill_memory import VectorMemorySkill
from robutler_skill_memory.milvus_store import DimensionMismatchError
from robutler_skill_memory.vector import split_text

from memory_test_helpers import SERVER_DSN, ToolCallingAgent, fresh_schema, with_search_path

CATS = [
    "Cats sleep for up to sixteen hours a day and purr when they are content.",
    "A kitten should be fed small meals of wet cat food several times a day.",
]
REVENUE = [
    "Quarterly revenue grew 12 percent, driven by subscription sales in Europe.",
    "The board approved the annual budget and the operating margin forecast.",
]


class Memory(ToolCallingAgent):
    """An agent with vector_memory (:class:`ToolCallingAgent`)."""

    def __init__(self, config: dict[str, Any], name: str = "vector-agent", registry: SkillRegistry | None = None) -> None:
        self.skill = VectorMemorySkill(config)
        super().__init__(name, {"vector_memory": self.skill}, **({"registry": registry} if registry is not None else {}))


@pytest.fixture(params=[
    "milvus", "pgvector-embedded", pytest.param("pgvector-server", marks=pytest.mark.postgres_server)])
async def backend(request, tmp_path) -> dict[str, Any]:
    """The config of one backend: Milvus Lite in a temporary file; pgvector on a fresh schema
    of the embedded PostgreSQL, or of ROBUTLER_TEST_POSTGRES_DSN's server when set."""
    if request.param == "milvus":
        yield {"backend": "milvus", "uri": str(tmp_path / "milvus.db")}
        return
    if request.param == "pgvector-server":
        if SERVER_DSN is None:
            pytest.skip("ROBUTLER_TEST_POSTGRES_DSN is not set (no PostgreSQL server to test against)")
        base = SERVER_DSN
        connection = await asyncpg.connect(base, timeout=5)
        try:
            available = await connection.fetchval("SELECT true FROM pg_available_extensions WHERE name = 'vector'")
        finally:
            await connection.close()
        if not available:
            pytest.skip("the PostgreSQL server of ROBUTLER_TEST_POSTGRES_DSN has no pgvector extension")
    else:
        base = request.getfixturevalue("embedded_postgres")
    async with fresh_schema(base) as schema:
        yield {"backend": "pgvector", "dsn": with_search_path(base, schema)}


@pytest.fixture
async def memory(backend):
    memory = Memory(backend)
    await memory.agent.initialize()
    yield memory
    await memory.agent.close()


async def test_add_search_delete_with_the_local_model(memory):
    added = await memory.call("alice", *[("add_content", {"text": t}) for t in CATS + REVENUE])
    ids = [a["ids"][0] for a in added]
    hits = await memory.one("alice", "search", {"query": "What do cats eat and how long do they sleep?", "top_k": 4})
    assert [h["text"] for h in hits[:2]] == sorted(CATS, key=lambda t: [h["text"] for h in hits].index(t))
    assert {h["text"] for h in hits[:2]} == set(CATS)  # the cat texts are nearer than revenue
    assert hits[0]["score"] > hits[2]["score"] and -1 <= hits[-1]["score"] <= 1
    assert set(hits[0]) == {"id", "text", "score", "metadata"} and hits[0]["metadata"] == {}
    assert await memory.one("alice", "delete_content", {"id": ids[0]}) == {"id": ids[0], "deleted": True}
    assert await memory.one("alice", "delete_content", {"id": ids[0]}) == {"id": ids[0], "deleted": False}
    hits = await memory.one("alice", "search", {"query": "cats", "top_k": 10})
    assert [h["id"] for h in hits if h["id"] == ids[0]] == [] and len(hits) == 3


async def test_two_users_never_see_each_other_whatever_the_model_sends(memory):
    [alice] = (await memory.one("alice", "add_content", {"text": CATS[0], "metadata": {"owner": "alice"}}))["ids"]
    [bob] = (await memory.one("bob", "add_content", {"text": CATS[1]}))["ids"]
    await memory.one(None, "add_content", {"text": REVENUE[0]})
    for extra in ({}, {"user": "bob"}, {"user_id": "bob", "partition": "bob", "namespace": "bob"}):
        hits = await memory.one("alice", "search", {"query": "cats", "top_k": 10, **extra})
        if isinstance(hits, list):  # extra arguments are refused or ignored, never obeyed
            assert [(h["id"], h["metadata"]) for h in hits] == [(alice, {"owner": "alice"})]
        else:
            assert "bob" not in json.dumps(hits) or "invalid arguments" in hits
    assert [h["id"] for h in await memory.one("bob", "search", {"query": "cats"})] == [bob]
    assert [h["text"] for h in await memory.one(None, "search", {"query": "cats"})] == [REVENUE[0]]
    # bob cannot delete alice's vector, even by its id; alice still finds it
    assert await memory.one("bob", "delete_content", {"id": alice}) == {"id": alice, "deleted": False}
    assert [h["id"] for h in await memory.one("alice", "search", {"query": "cats"})] == [alice]


async def test_one_user_gets_their_own_top_k_among_many(memory):
    # 30 cat texts of another user are nearer to the query than any of alice's: alice still
    # gets 3 results, all hers (a global top 3 filtered afterwards would give her none)
    await memory.call("mallory", *[("add_content", {"text": f"Cats and kittens report {i}: cat food"}) for i in range(30)])
    await memory.call("alice", *[("add_content", {"text": t}) for t in [*REVENUE, "Invoices are due on Friday.", "Ship the order."]])
    hits = await memory.one("alice", "search", {"query": "cat food for kittens", "top_k": 3})
    assert len(hits) == 3 and all("Cats and kittens" not in h["text"] for h in hits)


@pytest.fixture
async def milvus_memory(tmp_path):
    """vector_memory on Milvus Lite only, for what does not depend on the backend."""
    memory = Memory({"backend": "milvus", "uri": str(tmp_path / "milvus.db")})
    await memory.agent.initialize()
    yield memory
    await memory.agent.close()


async def test_a_long_text_is_chunked_and_each_chunk_is_found(milvus_memory):
    memory = milvus_memory
    text = " ".join(["Paris is the capital of France and its largest city."] * 12 + [
        "Kittens drink milk but adult cats are often lactose intolerant."] * 12)
    memory.skill.settings.chunk_size = 300
    [result] = await memory.call("alice", ("add_content", {"text": text, "metadata": {"source": "notes"}}))
    assert len(result["ids"]) > 3
    hits = await memory.one("alice", "search", {"query": "can cats drink milk", "top_k": 1})
    assert "lactose" in hits[0]["text"] and len(hits[0]["text"]) <= 300
    assert hits[0]["metadata"]["source"] == "notes" and hits[0]["metadata"]["chunks"] == len(result["ids"])


async def test_bad_arguments_are_tool_errors_and_the_request_completes(milvus_memory):
    memory = milvus_memory
    results = await memory.call(
        "alice", ("add_content", {"text": "   "}), ("search", {"query": "x", "top_k": 0}),
        ("add_content", {"text": "x", "metadata": "not an object"}))
    assert all(isinstance(r, str) for r in results), results
    assert "empty" in results[0] and "top_k" in results[1] and "metadata" in results[2]


async def test_the_vectors_survive_a_restart(backend):
    first = Memory(backend)
    await first.agent.initialize()
    try:
        [ids] = await first.call("alice", ("add_content", {"text": CATS[0]}))
    finally:
        await first.agent.close()
    second = Memory(backend)
    await second.agent.initialize()
    try:
        hits = await second.one("alice", "search", {"query": "sleeping cats"})
        assert [h["id"] for h in hits] == ids["ids"]
    finally:
        await second.agent.close()


async def test_auto_recall_adds_only_the_callers_nearest_texts(backend):
    memory = Memory({**backend, "auto_recall": True, "recall_limit": 1})
    await memory.agent.initialize()
    try:
        await memory.call("alice", *[("add_content", {"text": t}) for t in CATS + REVENUE])
        await memory.call("bob", ("add_content", {"text": "Bob's cat is called Felix."}))
        await memory.call("alice", ("search", {"query": "x"}), message="How much did revenue grow?")
        system = memory.system_message()
        assert "Relevant memories" in system and REVENUE[0] in system
        assert "Felix" not in system and CATS[0] not in system
    finally:
        await memory.agent.close()


class TwoDimensions(LLMSkill):
    """A provider whose embeddings have 2 dimensions (to meet a 384-dimensional store)."""

    model_prefixes = ("two",)

    async def chat_completion(self, messages, tools=None, **params):  # pragma: no cover
        raise NotImplementedError

    async def chat_completion_stream(self, messages, tools=None, **params):  # pragma: no cover
        yield {}

    async def embed(self, texts, model=None):
        return [[1.0, float(len(t))] for t in texts]


async def test_a_dimension_mismatch_is_a_clear_error(backend):
    memory = Memory(backend)
    await memory.agent.initialize()
    try:
        await memory.one("alice", "add_content", {"text": CATS[0]})
    finally:
        await memory.agent.close()
    from robutler_core.plugins import installed_skills

    registry = SkillRegistry()
    for info in installed_skills():
        registry.add(info.skill_class, name=info.name, distribution=info.distribution)
    registry.add(TwoDimensions, name="two")
    other = Memory({**backend, "embedding_model": "two/tiny"}, registry=registry)
    await other.agent.initialize()  # the store exists with 384 dimensions
    try:
        [error] = await other.call("alice", ("search", {"query": "cats"}))
        assert "384-dimensional" in error and "gave 2" in error
    finally:
        await other.agent.close()
    with pytest.raises(DimensionMismatchError, match="not the configured dimension 8"):
        await Memory({**backend, "dimension": 8}).agent.initialize()


def test_split_text_keeps_chunks_within_the_size_at_natural_breaks():
    assert split_text("  short  ", 100) == ["short"] and split_text(" \n ", 100) == []
    text = "First sentence here. " * 40 + "\n\n" + "Second paragraph words. " * 40
    chunks = split_text(text, 200, 40)
    assert all(len(c) <= 200 for c in chunks) and len(chunks) > 8
    assert all(c.endswith(".") for c in chunks[:-1])  # cut at sentence ends
    assert "Second paragraph" in chunks[-1]
    words = set(text.split())
    assert all(set(c.split()) <= words for c in chunks)  # no word cut in two
    unbroken = "x" * 450
    assert [len(c) for c in split_text(unbroken, 200)] == [200, 200, 50]


def test_config_is_checked():
    with pytest.raises(ConfigurationError, match="backend"):
        VectorMemorySkill({"backend": "faiss"})
    with pytest.raises(ConfigurationError, match="chunk_overlap"):
        VectorMemorySkill({"chunk_size": 200, "chunk_overlap": 200})
    with pytest.raises(ConfigurationError, match="collection"):
        VectorMemorySkill({"collection": "a; DROP TABLE x"})
    with pytest.raises(ConfigurationError, match=r"no local model 'MiniLM-XL'"):
        VectorMemorySkill({"embedding_model": "local/MiniLM-XL"}).check_configuration()
    VectorMemorySkill({"embedding_model": "local/all-MiniLM-L6-v2"}).check_configuration()


async def test_milvus_lite_searches_only_the_callers_partition_key_bucket(tmp_path):
    # Milvus Lite does not prune partition-key buckets by itself; the store names the bucket
    # it computes. If a Milvus Lite release routes rows elsewhere, this fails (not the users).
    from robutler_skill_memory.milvus_store import MilvusStore, owner_key

    store = MilvusStore(str(tmp_path / "buckets.db"))
    await store.open()
    try:
        users = [f"user-{i}" for i in range(40)]
        for i, user in enumerate(users):
            await store.add(("agent", user), [{"id": f"{i:032x}", "text": user, "metadata": {}, "vector": [1.0, float(i), 0.5, 0.0], "created_at": 0}])
        assert len(store._buckets) == 16 and len({tuple(store._bucket(owner_key(("agent", u)))["partition_names"]) for u in users}) > 8
        for i, user in enumerate(users):
            [hit] = await store.search(("agent", user), [1.0, float(i), 0.5, 0.0], 5)
            assert hit["text"] == user and hit["score"] > 0.999
    finally:
        await store.close()


async def test_a_server_without_pgvector_is_a_clear_configuration_error(tmp_path):
    if SERVER_DSN is None:
        pytest.skip("ROBUTLER_TEST_POSTGRES_DSN is not set (no PostgreSQL server to test against)")
    connection = await asyncpg.connect(SERVER_DSN, timeout=5)
    try:
        if await connection.fetchval("SELECT true FROM pg_available_extensions WHERE name = 'vector'"):
            pytest.skip("this server has pgvector")
    finally:
        await connection.close()
    with pytest.raises(ConfigurationError, match="no pgvector extension.*backend: milvus"):
        await Memory({"backend": "pgvector", "dsn": SERVER_DSN}).agent.initialize()


async def test_concurrent_first_adds_create_the_hnsw_index_once(embedded_postgres):
    """The first add_content calls of a request run at once; each creates the table and the
    HNSW index if missing, which must not race (a unique violation in pg_class)."""
    import asyncio

    from robutler_skill_memory.pgvector_store import PgvectorStore, cpu_runs_embedded_pgvector_indexes

    if not cpu_runs_embedded_pgvector_indexes():
        pytest.skip("the embedded pgvector cannot build indexes on this CPU (no AVX-512)")
    for attempt in range(5):  # the race needs the adds to meet; five fresh tables
        async with fresh_schema(embedded_postgres) as schema:
            store = PgvectorStore(with_search_path(embedded_postgres, schema), index="hnsw")
            await store.open()
            try:
                rows = [[{"id": f"{attempt}-{i}", "text": "t", "metadata": {}, "created_at": 0,
                          "vector": [1.0, float(i), 0.5]}] for i in range(8)]
                await asyncio.gather(*(store.add(("agent", f"user{i}"), r) for i, r in enumerate(rows)))
                async with store.database.acquire() as connection:
                    assert await connection.fetchval(
                        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'robutler_memory_embedding'",
                        schema) == 1
                assert [h["id"] for h in await store.search(("agent", "user3"), [1.0, 3.0, 0.5], 5)] == [f"{attempt}-3"]
            finally:
                await store.close()
