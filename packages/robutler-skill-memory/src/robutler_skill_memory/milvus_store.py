"""The Milvus backend of ``vector_memory``: Milvus Lite from a file, or a Milvus server or cluster.

pymilvus' ``MilvusClient`` is blocking: every call runs in a worker thread
(``asyncio.to_thread``), never on the event loop. One collection holds every agent's and user's
vectors; its ``owner`` field (a hash of the partition, see :func:`owner_key`) is Milvus'
partition key, and every search, read and delete filters on it, so a search returns the
caller's own top ``top_k`` (the filter is applied before the nearest neighbours are picked).

Milvus Lite searches rows that are still in its memtable ("growing") by brute force with a
per-row filter: about 0.5 s a query at 10k rows here. So on Milvus Lite the store flushes
(seals) what it inserts, within half a second, and the collection has a vector index (``FLAT`` by default, see
``index_type``): measured at 10k vectors of 384 dimensions, one user among 50, top 5:
growing 490 ms a query, sealed 15-40 ms. A Milvus server seals and indexes by itself; the
store does not flush there (flushes are rate-limited on a server).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

from robutler_core.errors import ConfigurationError

logger = logging.getLogger("robutler_skill_memory.milvus_store")

_ID = re.compile(r"^[0-9a-f]{32}$")

FLUSH_DELAY = 0.5
"""Seconds between an insert into Milvus Lite and the flush that seals it (inserts meanwhile
share the flush: a flush costs about 0.1 s however few rows it seals)."""

MAX_TEXT_BYTES = 65_535
"""Milvus' VARCHAR limit; chunks are kept below it."""


@functools.lru_cache(maxsize=4096)
def owner_key(partition: tuple[str, str]) -> str:
    """The stored owner of a ``(agent, user)`` partition: 32 hex digits (SHA-256 of the pair
    as JSON), so no agent or user name is ever spliced into a filter expression. Cached for
    the latest 4,096 partitions (a search computed it each time: 2 us)."""
    return hashlib.sha256(json.dumps(list(partition)).encode()).hexdigest()[:32]


class DimensionMismatchError(ConfigurationError):
    """The embedding model's vectors do not have the collection's (or configured) dimension."""


def check_dimension(vectors: list[list[float]], dimension: int, where: str) -> None:
    """Raise DimensionMismatchError when a vector's length is not ``dimension``."""
    for vector in vectors:
        if len(vector) != dimension:
            raise DimensionMismatchError(
                f"{where} holds {dimension}-dimensional vectors but the embedding model gave "
                f"{len(vector)}: use the embedding model the store was filled with, or another "
                "collection (config 'collection') for this one"
            )


class MilvusStore:
    """Vectors with their text and metadata in one Milvus collection.

    Args:
        uri: a file path (Milvus Lite; its directory is created) or ``http(s)://host:19530``
            (a Milvus server or cluster; Zilliz Cloud's endpoint).
        token: the server's token (``user:password`` or an API key), if it needs one.
        collection: the collection's name.
        dimension: the vectors' dimension, or ``None`` to take it from the collection when
            it exists, else from the first vectors stored or searched.
        index_type: the vector index (``FLAT``, ``IVF_FLAT``, ``HNSW``, ``AUTOINDEX``; COSINE
            metric in every case).
    """

    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        collection: str = "robutler_memory",
        dimension: int | None = None,
        index_type: str = "FLAT",
    ) -> None:
        self.uri = uri
        self.token = token
        self.collection = collection
        self.dimension = dimension
        self.index_type = index_type
        self.is_lite = not uri.startswith(("http://", "https://", "tcp://", "grpc://"))
        self._client: Any = None
        self._flusher: asyncio.Future[None] | None = None
        self._buckets: list[str] = []  # Milvus Lite's partition-key buckets, see _bucket
        self._ready = False
        self._lock = threading.Lock()  # collection creation, once
        # Milvus Lite fails concurrent flushes of one file: writes to a file take turns.
        self._write_lock = _write_lock(uri) if self.is_lite else contextlib.nullcontext()

    @property
    def description(self) -> str:
        return f"Milvus collection '{self.collection}' at {self.uri}"

    async def open(self) -> None:
        """Connect (in a worker thread) and, when it exists, read the collection's dimension.

        Raises ConfigurationError when the server cannot be reached or the existing
        collection's dimension differs from the configured one.
        """
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        from pymilvus import MilvusClient

        if self.is_lite:
            Path(self.uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MilvusClient(uri=self.uri, token=self.token or "")
            exists = self._client.has_collection(self.collection)
        except Exception as exc:
            raise ConfigurationError(f"cannot open {self.description}: {exc}") from exc
        if exists:
            existing = self._collection_dimension()
            if self.dimension is not None and existing != self.dimension:
                raise DimensionMismatchError(
                    f"{self.description} holds {existing}-dimensional vectors, not the configured "
                    f"dimension {self.dimension}"
                )
            self.dimension = existing
            self._client.load_collection(self.collection)
            self._read_buckets()
            self._ready = True

    def _collection_dimension(self) -> int:
        for field in self._client.describe_collection(self.collection)["fields"]:
            if field["name"] == "vector":
                return int(field["params"]["dim"])
        raise ConfigurationError(f"{self.description} has no 'vector' field: it is not a Robutler memory collection")

    def _ensure(self, dimension: int) -> None:
        """Create the collection (schema, partition key, index) when it does not exist yet."""
        with self._lock:
            if self._ready:
                return
            from pymilvus import DataType, MilvusClient

            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("owner", DataType.VARCHAR, max_length=64, is_partition_key=True)
            schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
            schema.add_field("metadata", DataType.JSON)
            schema.add_field("created_at", DataType.INT64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
            index_params = self._client.prepare_index_params()
            index_params.add_index(field_name="owner", index_type="INVERTED")
            index_params.add_index(
                field_name="vector", index_type=self.index_type, metric_type="COSINE",
                params=_INDEX_PARAMS.get(self.index_type, {}),
            )
            self._client.create_collection(self.collection, schema=schema, index_params=index_params)
            self._client.load_collection(self.collection)
            self._read_buckets()
            self.dimension = dimension
            self._ready = True

    async def add(self, partition: tuple[str, str], rows: list[dict[str, Any]]) -> None:
        """Store ``rows`` (each: ``id``, ``text``, ``metadata``, ``vector``, ``created_at``
        in Unix milliseconds) in ``partition``. They are searchable on return; on Milvus Lite
        a flush (seal) follows within :data:`FLUSH_DELAY` seconds, one for every insert
        meanwhile, so that searches use the index instead of scanning growing rows.

        Raises DimensionMismatchError when a vector has another dimension than the collection.
        """
        if not rows:
            return
        vectors = [row["vector"] for row in rows]
        check_dimension(vectors, self.dimension or len(vectors[0]), self.description)
        owner = owner_key(partition)
        await asyncio.to_thread(self._add, [{**row, "owner": owner} for row in rows])
        self._schedule_flush()

    def _add(self, rows: list[dict[str, Any]]) -> None:
        self._ensure(len(rows[0]["vector"]))
        with self._write_lock:
            self._client.insert(self.collection, rows)

    def _schedule_flush(self) -> None:
        if self.is_lite and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_DELAY)
        try:
            await asyncio.to_thread(self._flush)
        except Exception:  # the next insert schedules another; close flushes too
            logger.warning("flushing %s failed", self.description, exc_info=True)

    def _flush(self) -> None:
        if self._client is not None and self._ready:
            with self._write_lock:
                self._client.flush(self.collection)

    async def search(self, partition: tuple[str, str], vector: list[float], top_k: int) -> list[dict[str, Any]]:
        """The ``top_k`` rows of ``partition`` nearest to ``vector``, best first: ``id``,
        ``text``, ``score`` (cosine similarity, 1 = same direction), ``metadata``.

        Raises DimensionMismatchError when ``vector`` has another dimension than the collection.
        """
        if self.dimension is not None:
            check_dimension([vector], self.dimension, self.description)
        if not self._ready:
            return []
        owner = owner_key(partition)
        hits = await asyncio.to_thread(
            self._client.search, self.collection, [vector], limit=top_k,
            filter=f'owner == "{owner}"', output_fields=["text", "metadata"],
            search_params={"metric_type": "COSINE"}, **self._bucket(owner),
        )
        return [
            {"id": hit["id"], "text": hit["entity"]["text"], "score": float(hit["distance"]),
             "metadata": hit["entity"].get("metadata") or {}}
            for hit in hits[0]
        ]

    def _bucket(self, owner: str) -> dict[str, Any]:
        """Milvus Lite: ``partition_names`` of the partition-key bucket holding ``owner``'s rows.

        Milvus Lite routes a row to the bucket ``_pk_{md5(key) % buckets}`` but, unlike a
        server, does not prune buckets when a search filters on the key: naming the bucket
        searches 1/16 of the rows (measured at 10k vectors: 22 ms -> 4 ms a search). A test
        checks that rows are where this computes (tests/test_vector.py); a server prunes by
        itself, so nothing is added there.
        """
        if not self._buckets:
            return {}
        index = int(hashlib.md5(owner.encode()).hexdigest(), 16) % len(self._buckets)
        return {"partition_names": [f"_pk_{index}"]}

    def _read_buckets(self) -> None:
        if not self.is_lite:
            return
        names = set(self._client.list_partitions(self.collection)) - {"_default"}
        buckets = [f"_pk_{i}" for i in range(len(names))]
        self._buckets = buckets if buckets and names == set(buckets) else []

    async def delete(self, partition: tuple[str, str], item_id: str) -> bool:
        """Delete the row ``item_id`` when it belongs to ``partition``; ``True`` when it did.
        Another partition's row is left as it is (and reported as not found)."""
        if not self._ready or not _ID.match(item_id):  # ids are 32 hex digits: nothing to quote
            return False
        deleted = await asyncio.to_thread(self._delete, owner_key(partition), item_id)
        self._schedule_flush()
        return deleted

    def _delete(self, owner: str, item_id: str) -> bool:
        expression = f'owner == "{owner}" and id == "{item_id}"'
        with self._write_lock:
            found = self._client.query(self.collection, filter=expression, output_fields=["id"])
            if not found:
                return False
            self._client.delete(self.collection, filter=expression)
        return True

    async def count(self, partition: tuple[str, str]) -> int:
        """How many rows ``partition`` holds."""
        if not self._ready:
            return 0
        rows = await asyncio.to_thread(
            self._client.query, self.collection, filter=f'owner == "{owner_key(partition)}"',
            output_fields=["count(*)"],
        )
        return int(rows[0]["count(*)"]) if rows else 0

    async def close(self) -> None:
        """Flush what is pending (Milvus Lite) and close the client (in a worker thread)."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            await asyncio.to_thread(self._flush)
        client, self._client, self._ready = self._client, None, False
        if client is not None:
            await asyncio.to_thread(client.close)


_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(uri: str) -> threading.Lock:
    key = str(Path(uri).expanduser().resolve())
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


_INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "IVF_FLAT": {"nlist": 128},
    "HNSW": {"M": 16, "efConstruction": 200},
}
