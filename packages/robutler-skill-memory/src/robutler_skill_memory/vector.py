"""``vector_memory``: semantic memory of texts, on Milvus (default) or pgvector.

Each caller has its own partition (:func:`robutler_skill_memory.identity.partition`: the
agent's name and ``context.peer_user_id``); the tools take no user argument, so nothing a
model sends reaches another caller's vectors.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Literal

import pydantic

from robutler_core import Context, Skill, prompt, tool
from robutler_core.errors import ConfigurationError

from robutler_core.embeddings import Embedder
from .local import LocalEmbeddingSkill
from .identity import partition
from .milvus_store import MAX_TEXT_BYTES, MilvusStore
from robutler_core.paths import data_dir
from .pgvector_store import PgvectorStore

logger = logging.getLogger("robutler_skill_memory.vector")

DEFAULT_EMBEDDING_MODEL = "local/all-MiniLM-L6-v2"
MAX_TOP_K = 100


class VectorMemoryConfig(pydantic.BaseModel):
    """Options of ``vector_memory`` (unknown options are refused)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    backend: Literal["milvus", "pgvector"] = "milvus"
    """``milvus``: Milvus Lite from a file, or a Milvus server or cluster (``uri``);
    ``pgvector``: a table on PostgreSQL (``dsn``, else ``$ROBUTLER_POSTGRES_DSN``, else the
    embedded PostgreSQL shared with ``long_term_memory``)."""
    uri: str | None = None
    """Milvus: a file path (Milvus Lite; default ``$ROBUTLER_DATA_DIR/milvus.db``) or
    ``http(s)://host:19530`` (a Milvus server or cluster, Zilliz Cloud)."""
    token: str | None = None
    """Milvus server token (``user:password``, or a Zilliz Cloud API key)."""
    dsn: str | None = None
    """pgvector: the PostgreSQL URL."""
    collection: str = pydantic.Field("robutler_memory", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    """Milvus collection, or pgvector table (lower case), holding every caller's vectors."""
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    """``provider/model`` through the installed LLM skills (``openai/text-embedding-3-small``,
    ``litellm/...``, ``local/all-MiniLM-L6-v2``)."""
    dimension: int | None = pydantic.Field(None, gt=0, le=32_768)
    """The vectors' dimension; unset: the collection's, else the first embedding's."""
    index_type: str = "FLAT"
    """Milvus vector index (``FLAT``, ``IVF_FLAT``, ``HNSW``, ``AUTOINDEX``), COSINE metric."""
    pg_index: Literal["auto", "hnsw", "none"] = "auto"
    """pgvector index: ``hnsw`` (cosine), ``none`` (exact scans of the caller's rows), ``auto``
    (``hnsw``, except on the embedded PostgreSQL of a CPU without AVX-512, whose pgvector build
    cannot run its indexes there)."""
    auto_recall: bool = False
    """Add the caller's texts nearest to the last user message to the system message."""
    recall_limit: int = pydantic.Field(5, ge=1, le=MAX_TOP_K)
    """How many texts auto-recall adds."""
    recall_min_score: float | None = pydantic.Field(None, ge=-1, le=1)
    """Auto-recall leaves out texts less similar than this (cosine similarity)."""
    chunk_size: int = pydantic.Field(1000, ge=100, le=16_000)
    """Longest chunk of an added text, in characters; longer texts are split."""
    chunk_overlap: int = pydantic.Field(100, ge=0)
    """Characters a chunk repeats from the end of the previous one."""

    @pydantic.model_validator(mode="after")
    def _overlap_below_size(self) -> VectorMemoryConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


_BREAKS = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


def split_text(text: str, chunk_size: int, overlap: int = 0) -> list[str]:
    """``text`` in chunks of at most ``chunk_size`` characters, each cut at the last paragraph,
    line, sentence or word break of its window when there is one in its second half, the next
    starting ``overlap`` characters before the cut. Blank text gives ``[]``; a text within
    ``chunk_size`` is one chunk."""
    text = text.strip()
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + chunk_size, len(text))
        if end < len(text):
            window = text[start:end]
            for separator in _BREAKS:
                cut = window.rfind(separator)
                if cut >= chunk_size // 2:
                    end = start + cut + len(separator)
                    break
        chunk = text[start:end].strip()
        if chunk:
            chunks.append(chunk)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
        while start < end and not text[start - 1].isspace() and overlap:  # begin on a word
            start += 1
    return chunks


class VectorMemorySkill(Skill):
    """Semantic memory: texts stored with their embeddings, searched by meaning.

    Tools (every caller's own partition): ``add_content``, ``search``, ``delete_content``.
    With ``auto_recall`` a prompt adds the caller's texts nearest to the last user message to
    the system message. See :class:`VectorMemoryConfig` for the options.
    """

    config_model = VectorMemoryConfig

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.settings = VectorMemoryConfig(**self.config)
        self.store: MilvusStore | PgvectorStore | None = None
        self.embedder: Embedder | None = None

    def make_store(self) -> MilvusStore | PgvectorStore:
        """The configured backend's store (not opened)."""
        s = self.settings
        if s.backend == "pgvector":
            return PgvectorStore(s.dsn, collection=s.collection.lower(), dimension=s.dimension, index=s.pg_index)
        uri = s.uri or str(data_dir() / "milvus.db")
        return MilvusStore(uri, token=s.token, collection=s.collection, dimension=s.dimension, index_type=s.index_type)

    def check_configuration(self) -> None:
        """Raise ConfigurationError when a ``local/...`` embedding model cannot run here
        (sentence-transformers or the model's package not installed). Cheap, no I/O."""
        prefix, _, name = self.settings.embedding_model.partition("/")
        if prefix == "local":
            LocalEmbeddingSkill(LocalEmbeddingSkill.model_config(prefix, name)).check_configuration()

    async def initialize(self, agent: Any) -> None:
        """Open the store and set up the embedding model (the local model loads here).

        Raises ConfigurationError (bad store, dimension, model) or DatabaseUnavailableError.
        """
        self.agent = agent
        self.embedder = Embedder(agent=agent)
        store = self.make_store()
        await store.open()
        self.store = store
        await self.embedder.skill(self.settings.embedding_model)

    async def close(self) -> None:
        """Close the store and the embedding skills this skill created."""
        store, self.store = self.store, None
        embedder, self.embedder = self.embedder, None
        if store is not None:
            await store.close()
        if embedder is not None:
            await embedder.close()

    def _ready(self) -> tuple[MilvusStore | PgvectorStore, Embedder]:
        if self.store is None or self.embedder is None:
            raise ConfigurationError("vector_memory is not initialised (its agent has not started)")
        return self.store, self.embedder

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        _, embedder = self._ready()
        return await embedder.embed(texts, self.settings.embedding_model)

    @tool
    async def add_content(self, text: str, metadata: dict[str, Any] | None = None, context: Context = None) -> dict[str, Any]:  # type: ignore[assignment]
        """Remember a text for later semantic search. Long texts are split into chunks.

        Args:
            text: the text to remember.
            metadata: a JSON object stored with it (source, tags, ...).

        Returns:
            ``{"ids": [...]}``: one id per stored chunk, for delete_content.
        """
        store, _ = self._ready()
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("metadata must be a JSON object")
        chunks = split_text(text, self.settings.chunk_size, self.settings.chunk_overlap)
        if not chunks:
            raise ValueError("text is empty")
        for chunk in chunks:
            if len(chunk.encode()) > MAX_TEXT_BYTES:  # only with chunk_size near its limit
                raise ValueError(f"a chunk is over {MAX_TEXT_BYTES} bytes: lower chunk_size")
        vectors = await self._embed(chunks)
        now = int(time.time() * 1000)
        rows = [
            {"id": uuid.uuid4().hex, "text": chunk, "vector": vector, "created_at": now,
             "metadata": {**(metadata or {}), **({"chunk": i, "chunks": len(chunks)} if len(chunks) > 1 else {})}}
            for i, (chunk, vector) in enumerate(zip(chunks, vectors))
        ]
        await store.add(partition(context), rows)
        return {"ids": [row["id"] for row in rows]}

    @tool
    async def search(self, query: str, top_k: int = 5, context: Context = None) -> list[dict[str, Any]]:  # type: ignore[assignment]
        """Find the remembered texts nearest in meaning to a query.

        Args:
            query: what to look for.
            top_k: how many results at most (1 to 100).

        Returns:
            Best first: ``{"id", "text", "score", "metadata"}``; score is the cosine similarity
            (1 = same meaning).
        """
        store, embedder = self._ready()
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}")
        if not query.strip():
            raise ValueError("query is empty")
        [vector] = await embedder.embed([query], self.settings.embedding_model)
        return await store.search(partition(context), vector, top_k)

    @tool
    async def delete_content(self, id: str, context: Context = None) -> dict[str, Any]:  # type: ignore[assignment]  # noqa: A002
        """Forget a remembered text (one chunk) by its id.

        Args:
            id: an id from add_content or search.

        Returns:
            ``{"id", "deleted"}``: deleted is false when you have no text with that id.
        """
        store, _ = self._ready()
        return {"id": id, "deleted": await store.delete(partition(context), id)}

    @prompt(priority=60, on_error="skip")
    async def recall(self, context: Context) -> str:
        """With ``auto_recall``: the caller's texts nearest to the last user message, as a
        list for the system message ("" without recall, a user message, or matches)."""
        if not self.settings.auto_recall:
            return ""
        question = _last_user_text(context.messages)
        if not question:
            return ""
        hits = await self.search(question, self.settings.recall_limit, context=context)
        minimum = self.settings.recall_min_score
        lines = [f"- {hit['text']}" for hit in hits if minimum is None or hit["score"] >= minimum]
        if not lines:
            return ""
        return "Relevant memories (your notes from earlier conversations with this user):\n" + "\n".join(lines)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content.strip()
        if isinstance(content, list):  # content parts: the text ones
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text").strip()
        return ""
    return ""

