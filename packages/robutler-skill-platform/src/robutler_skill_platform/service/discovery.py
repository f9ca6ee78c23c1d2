"""Discovery: agents publish what they do (intents), and callers find them by what they need.

Intents are kept in ``platform_intents``. With an embedding model (``"provider/model"``, served
by an installed LLM skill's ``embed()``, e.g. ``local/all-MiniLM-L6-v2`` from
robutler-skill-memory[local] or ``openai/text-embedding-3-small``), each intent's text
(``intent``, then its description) is embedded when it is published, and a query is ranked by
cosine similarity: by pgvector in the database when the ``vector`` extension is there (an exact
scan; intents are few), else in Python over the stored vectors. Without a model, full-text
search (PostgreSQL ``english`` text search) and trigram similarity (``pg_trgm``) rank them.
``similarity`` is in [0, 1] either way, best first.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import asyncpg

from robutler_core.errors import BadRequestError, NotFoundError, PermissionDeniedError

logger = logging.getLogger(__name__)

MIGRATION = """
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE TABLE platform_intents (
    id bigserial PRIMARY KEY,
    agent_id text NOT NULL REFERENCES platform_agents (id) ON DELETE CASCADE,
    intent text NOT NULL,
    description text,
    url text,
    embedding real[],
    embedding_model text,
    search tsvector GENERATED ALWAYS AS (
        to_tsvector('english', intent || ' ' || coalesce(description, ''))
    ) STORED,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, intent)
);
CREATE INDEX platform_intents_search ON platform_intents USING gin (search);
"""

TYPES = ("agents", "intents")
MAX_INTENTS = 100
"""Intents one call may publish at most."""


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


class Discovery:
    """Publishing and searching intents on the platform's database.

    Args:
        database: the platform's ``Database`` (``acquire()``).
        embedding_model: ``"provider/model"`` or ``None`` (text search).
        embedder: embeds texts (``await embedder.embed(texts, model)``); made from the
            installed skills when ``None`` and a model is given.
    """

    def __init__(self, database: Any, embedding_model: str | None = None, embedder: Any = None) -> None:
        self.database = database
        self.embedding_model = embedding_model
        self.embedder = embedder
        self.pgvector = False

    async def open(self) -> None:
        """Use pgvector when the database has (or can create) the ``vector`` extension."""
        if self.embedding_model and self.embedder is None:
            from robutler_core.embeddings import Embedder

            self.embedder = Embedder()
        async with self.database.acquire() as connection:
            try:
                await connection.execute("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
                self.pgvector = True
            except asyncpg.PostgresError as exc:
                logger.info("no pgvector in this PostgreSQL (%s): intents are ranked in Python", exc)

    async def close(self) -> None:
        if self.embedder is not None and hasattr(self.embedder, "close"):
            await self.embedder.close()

    async def _embed(self, texts: list[str]) -> list[list[float]] | None:
        if not self.embedding_model or not texts:
            return None
        return await self.embedder.embed(texts, self.embedding_model)

    async def publish(self, caller: dict[str, Any], intents: list[dict[str, Any]], replace: bool) -> dict[str, Any]:
        """Publish ``intents`` (``{intent, agent_id, description?, url?}``; ``agent_id`` an
        agent's id or name) of agents the caller owns; a published intent is updated.
        ``replace`` removes the agents' other intents. Returns ``{intents: [{id, agent_id,
        intent}]}``. PermissionDeniedError for another owner's agent, NotFoundError for an
        unknown agent, BadRequestError for an empty intent or too many."""
        if len(intents) > MAX_INTENTS:
            raise BadRequestError(f"at most {MAX_INTENTS} intents per call", param="intents")
        for index, item in enumerate(intents):
            if not str(item.get("intent") or "").strip():
                raise BadRequestError("an intent needs its text", param=f"intents.{index}.intent")
        vectors = await self._embed([f"{i['intent']}. {i.get('description') or ''}".strip() for i in intents])
        published = []
        async with self.database.acquire() as connection, connection.transaction():
            agents: dict[str, str] = {}
            for item in intents:
                reference = item["agent_id"]
                row = await connection.fetchrow(
                    "SELECT id, owner_id, name FROM platform_agents WHERE id = $1 OR name = $1", reference
                )
                if row is None:
                    raise NotFoundError(f"no agent '{reference}' is registered", code="agent_not_found")
                if row["owner_id"] != caller["id"]:
                    raise PermissionDeniedError(f"only the owner of agent '{row['name']}' may publish its intents")
                agents[row["id"]] = row["name"]
            for index, item in enumerate(intents):
                agent_id = next(a for a, n in agents.items() if item["agent_id"] in (a, n))
                intent_id = await connection.fetchval(
                    "INSERT INTO platform_intents (agent_id, intent, description, url, embedding, embedding_model) "
                    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (agent_id, intent) DO UPDATE SET "
                    "description = EXCLUDED.description, url = EXCLUDED.url, embedding = EXCLUDED.embedding, "
                    "embedding_model = EXCLUDED.embedding_model, updated_at = now() RETURNING id",
                    agent_id, item["intent"].strip(), item.get("description"), item.get("url"),
                    vectors[index] if vectors else None, self.embedding_model,
                )
                published.append({"id": intent_id, "agent_id": agent_id, "intent": item["intent"].strip()})
            if replace:
                for agent_id in agents:
                    await connection.execute(
                        "DELETE FROM platform_intents WHERE agent_id = $1 AND NOT (id = ANY($2::bigint[]))",
                        agent_id, [p["id"] for p in published if p["agent_id"] == agent_id],
                    )
        return {"intents": published}

    async def search(self, query: str, limit: int, types: list[str]) -> dict[str, Any]:
        """``{results: {agents: [...], intents: [...]}}`` for ``query``, best first (see the
        module docstring); each list has at most ``limit`` entries."""
        if not query.strip():
            raise BadRequestError("query must not be empty", param="query")
        unknown = [t for t in types if t not in TYPES]
        if unknown:
            raise BadRequestError(f"unknown types {unknown}; use a subset of {list(TYPES)}", param="types")
        if not 1 <= limit <= 100:
            raise BadRequestError("limit must be between 1 and 100", param="limit")
        ranked = await self._rank(query, limit * 5 if "agents" in types else limit)
        results: dict[str, Any] = {}
        if "intents" in types:
            results["intents"] = ranked[:limit]
        if "agents" in types:
            agents: dict[str, dict[str, Any]] = {}
            for hit in ranked:
                agents.setdefault(hit["agent_id"], {
                    "agent_id": hit["agent_id"], "name": hit["agent_name"], "url": hit["url"],
                    "similarity": hit["similarity"], "intents": [],
                })["intents"].append(hit["intent"])
            results["agents"] = list(agents.values())[:limit]
        for hit in results.get("intents", []):
            hit.pop("agent_name", None)
        return {"results": results}

    async def _rank(self, query: str, limit: int) -> list[dict[str, Any]]:
        select = (
            "SELECT i.agent_id, a.name AS agent_name, i.intent, i.description, i.url, {similarity} AS similarity "
            "FROM platform_intents i JOIN platform_agents a ON a.id = i.agent_id "
        )
        async with self.database.acquire() as connection:
            if self.embedding_model:
                (vector,) = await self._embed([query])
                if self.pgvector:
                    rows = await connection.fetch(
                        select.format(similarity="greatest(0, 1 - (i.embedding::public.vector <=> $1::real[]::public.vector))")
                        + "WHERE i.embedding_model = $2 ORDER BY similarity DESC LIMIT $3",
                        vector, self.embedding_model, limit,
                    )
                    return [dict(r) | {"similarity": float(r["similarity"])} for r in rows]
                rows = await connection.fetch(
                    "SELECT i.agent_id, a.name AS agent_name, i.intent, i.description, i.url, i.embedding "
                    "FROM platform_intents i JOIN platform_agents a ON a.id = i.agent_id WHERE i.embedding_model = $1",
                    self.embedding_model,
                )
                hits = [
                    {k: r[k] for k in ("agent_id", "agent_name", "intent", "description", "url")}
                    | {"similarity": max(0.0, _cosine(vector, list(r["embedding"])))}
                    for r in rows
                ]
                return sorted(hits, key=lambda h: -h["similarity"])[:limit]
            rows = await connection.fetch(
                select.format(similarity=(
                    "greatest(ts_rank_cd(i.search, websearch_to_tsquery('english', $1), 32), "
                    "public.word_similarity($1, i.intent || ' ' || coalesce(i.description, '')))"
                ))
                + "WHERE i.search @@ websearch_to_tsquery('english', $1) "
                "OR public.word_similarity($1, i.intent || ' ' || coalesce(i.description, '')) > 0.3 "
                "ORDER BY similarity DESC LIMIT $2",
                query, limit,
            )
            return [dict(r) | {"similarity": float(r["similarity"])} for r in rows]
