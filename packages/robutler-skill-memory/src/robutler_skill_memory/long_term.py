"""``long_term_memory``: facts (a key, any JSON value, metadata) on PostgreSQL.

Each fact belongs to one partition, ``(agent name, caller)`` (:func:`~.identity.partition`):
the tools read and write only the calling request's partition. Search is PostgreSQL full-text
search (the ``english`` configuration: stemmed words, stop words dropped, any word of the query
may match) plus pg_trgm word similarity (misspellings, other languages, parts of words), over
the key and the value's text, best first.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pydantic

from robutler_core import Context, Skill, prompt, tool

from .identity import partition
from robutler_core.postgres import Database, DatabaseUnavailableError, connect

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 512
"""Characters of a fact's key at most."""
MAX_LIMIT = 100
"""Facts one ``retrieve_facts`` call returns at most."""

MIGRATIONS = [
    """
    CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
    CREATE TABLE robutler_facts (
        agent text NOT NULL,
        user_id text NOT NULL,
        key text NOT NULL,
        value jsonb NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        content text NOT NULL,
        search tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (agent, user_id, key)
    ) PARTITION BY HASH (agent, user_id);
    DO $$
    BEGIN
        FOR i IN 0..31 LOOP
            EXECUTE format(
                'CREATE TABLE robutler_facts_p%s PARTITION OF robutler_facts '
                'FOR VALUES WITH (MODULUS 32, REMAINDER %s)', i, i);
        END LOOP;
    END $$;
    CREATE INDEX robutler_facts_search ON robutler_facts USING gin (search) WITH (gin_pending_list_limit = 256);
    CREATE INDEX robutler_facts_trigrams ON robutler_facts USING gin (content gin_trgm_ops) WITH (gin_pending_list_limit = 256);
    CREATE INDEX robutler_facts_recent ON robutler_facts (agent, user_id, updated_at DESC);
    """,
]
"""Schema versions of the ``long_term`` namespace (see :meth:`Database.migrate`). The table is
hash-partitioned by (agent, user): a search reads one partition's indexes, about 1/32 of the
facts (the trigram index over every caller's facts made a search at 100k facts take 16 ms;
one partition's, 4 ms: ``benchmarks/bench_memory.py``). The GIN indexes keep a small pending list (``gin_pending_list_limit`` 256 kB, not 4 MB): every search
scans the pending list until it is merged, and after 100k facts were loaded a search took
20-60 ms with 4 MB, 1-4 ms with 256 kB (loading is about twice as slow)."""

SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan"}
"""Settings of the skill's connections. Generic plans for every statement (asyncpg prepares
each one): a custom plan, which PostgreSQL makes for the first five executions of a prepared
statement and keeps while its estimated cost is lower, costs 1.5-2.5 ms of planning each time
(the partitioned table) and, on a small partition, scans it sequentially, computing
``word_similarity`` for every row: at 10k facts 8-10 ms a search. The generic plan, made once
per connection, prunes to the caller's partition at run time and combines its indexes
(bitmap AND of (agent, user) with the OR of the full-text and trigram GIN indexes): 0.35 ms at
10k facts (``benchmarks/bench_memory.py``)."""

# Any word of the query may match (plainto_tsquery ANDs them; an assistant's question rarely
# contains every word of a fact): the & of plainto_tsquery become |.
_QUERY = "replace(plainto_tsquery('english', $3)::text, ' & ', ' | ')::tsquery"
_SEARCH = f"""
    SELECT key, value, metadata, updated_at,
           ts_rank_cd(search, {_QUERY}) + word_similarity($3, content) AS score
    FROM robutler_facts
    WHERE agent = $1 AND user_id = $2 AND (search @@ {_QUERY} OR $3 <% content)
    ORDER BY score DESC, updated_at DESC
    LIMIT $4
"""
_RECENT = """
    SELECT key, value, metadata, updated_at, NULL::float8 AS score
    FROM robutler_facts WHERE agent = $1 AND user_id = $2
    ORDER BY updated_at DESC LIMIT $3
"""
# ``created``: whether the key was new, from the snapshot before the statement (a partitioned
# table has no ``xmax`` to read in RETURNING).
_UPSERT = """
    WITH existing AS (SELECT 1 FROM robutler_facts WHERE agent = $1 AND user_id = $2 AND key = $3)
    INSERT INTO robutler_facts (agent, user_id, key, value, metadata, content)
    VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)
    ON CONFLICT (agent, user_id, key) DO UPDATE
    SET value = excluded.value, metadata = excluded.metadata, content = excluded.content,
        updated_at = now()
    RETURNING NOT EXISTS (SELECT 1 FROM existing) AS created, updated_at
"""


class LongTermMemoryConfig(pydantic.BaseModel):
    """Options of ``long_term_memory`` (the ``skills:`` entry of an agents file)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    dsn: str | None = pydantic.Field(
        None, description="PostgreSQL URL; default $ROBUTLER_POSTGRES_DSN, else the embedded PostgreSQL"
    )
    auto_recall: bool = pydantic.Field(
        True, description="add the facts most relevant to the last user message to the system message"
    )
    recall_limit: int = pydantic.Field(5, ge=1, le=MAX_LIMIT, description="facts auto-recall adds at most")
    max_value_bytes: int = pydantic.Field(
        65536, ge=1, description="size of a fact's value, as UTF-8 JSON, at most"
    )


class LongTermMemorySkill(Skill):
    """Facts that outlive conversations: ``store_fact``, ``retrieve_facts``, ``forget_fact``,
    and auto-recall of the facts relevant to the caller's last message.

    Config (:class:`LongTermMemoryConfig`): ``dsn``, ``auto_recall`` (default true),
    ``recall_limit`` (5), ``max_value_bytes`` (65536). Every tool works in the calling
    request's partition only (agent name, ``context.peer_user_id``); a bad argument or an
    unreachable database raises, which the model sees as the tool's error result.
    """

    config_model = LongTermMemoryConfig

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.settings = LongTermMemoryConfig.model_validate(self.config)
        self.database: Database | None = None

    async def initialize(self, agent: Any) -> None:
        """Open the pool (starting the embedded PostgreSQL when no server is configured) and
        apply the schema migrations. Raises DatabaseUnavailableError when the server cannot be
        reached."""
        self.agent = agent
        if self.database is not None:
            return
        database = await connect(self.settings.dsn, name="long_term_memory", server_settings=SERVER_SETTINGS)
        try:
            await database.migrate("long_term", MIGRATIONS)
        except BaseException:
            await database.close()
            raise
        self.database = database

    async def close(self) -> None:
        """Close the pool (the last user of the embedded PostgreSQL stops it)."""
        database, self.database = self.database, None
        if database is not None:
            await database.close()

    def _db(self) -> Database:
        if self.database is None:
            raise DatabaseUnavailableError("long_term_memory is not initialised (or already closed)")
        return self.database

    # -- tools -----------------------------------------------------------------------------
    @tool
    async def store_fact(
        self, key: str, value: Any, metadata: dict[str, Any] | None = None, context: Context = None  # type: ignore[assignment]
    ) -> dict[str, Any]:
        """Remember a fact about the user or the conversation, for later conversations. Storing
        an existing key replaces its value and metadata.

        Args:
            key: Short unique name of the fact, e.g. "favourite_colour".
            value: The fact: any JSON value (text, number, object, list).
            metadata: Optional JSON object about the fact (source, confidence, ...).

        Returns:
            ``{"key", "created": true if new / false if replaced, "updated_at": ISO 8601}``.

        Raises:
            ValueError: an empty or too long key, a value over ``max_value_bytes``, metadata that
                is not a JSON object.
            DatabaseUnavailableError: PostgreSQL cannot be reached.
        """
        agent, user = partition(_required(context))
        key = _checked_key(key)
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
        size = len(encoded.encode())
        if size > self.settings.max_value_bytes:
            raise ValueError(
                f"value is {size} bytes as JSON; the limit is {self.settings.max_value_bytes} bytes: "
                "store a shorter summary"
            )
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a JSON object, got {type(metadata).__name__}")
        text = value if isinstance(value, str) else encoded
        async with self._db().acquire() as connection:
            row = await connection.fetchrow(
                _UPSERT, agent, user, key, encoded, json.dumps(metadata, ensure_ascii=False, allow_nan=False),
                f"{key}\n{text}",
            )
        return {"key": key, "created": row["created"], "updated_at": row["updated_at"].isoformat()}

    @tool
    async def retrieve_facts(self, query: str, limit: int = 10, context: Context = None) -> list[dict[str, Any]]:  # type: ignore[assignment]
        """Find remembered facts relevant to a query, best match first. An empty query lists
        the most recently updated facts.

        Args:
            query: Words to look for in the facts' keys and values.
            limit: How many facts at most (1 to 100).

        Returns:
            ``[{"key", "value", "metadata", "updated_at": ISO 8601, "score"}]``, best first
            (``score`` is ``null`` for an empty query).

        Raises:
            ValueError: a limit outside 1..100.
            DatabaseUnavailableError: PostgreSQL cannot be reached.
        """
        return await self.search(_required(context), query, limit)

    @tool
    async def forget_fact(self, key: str, context: Context = None) -> dict[str, Any]:  # type: ignore[assignment]
        """Forget a remembered fact.

        Args:
            key: The fact's key, as stored.

        Returns:
            ``{"key", "forgotten": true if it existed}``.
        """
        agent, user = partition(_required(context))
        key = _checked_key(key)
        async with self._db().acquire() as connection:
            status = await connection.execute(
                "DELETE FROM robutler_facts WHERE agent = $1 AND user_id = $2 AND key = $3", agent, user, key
            )
        return {"key": key, "forgotten": status != "DELETE 0"}

    # -- auto-recall -----------------------------------------------------------------------
    @prompt(priority=60)
    async def recall(self, context: Context) -> str:
        """The caller's facts most relevant to their last message (``auto_recall``), for the
        system message; empty when none match, and when the database is unreachable (logged)."""
        if not self.settings.auto_recall:
            return ""
        question = last_user_text(context.messages)
        if not question.strip():
            return ""
        try:
            facts = await self.search(context, question, self.settings.recall_limit, recent_when_empty=False)
        except DatabaseUnavailableError as exc:
            logger.warning("long_term_memory: auto-recall skipped: %s", exc)
            return ""
        if not facts:
            return ""
        lines = [
            f"- {fact['key']}: {json.dumps(fact['value'], ensure_ascii=False)}"
            + (f" (metadata: {json.dumps(fact['metadata'], ensure_ascii=False)})" if fact["metadata"] else "")
            for fact in facts
        ]
        return "Facts you remember (long-term memory), relevant to the last message:\n" + "\n".join(lines)

    async def search(
        self, context: Context, query: str, limit: int, *, recent_when_empty: bool = True
    ) -> list[dict[str, Any]]:
        """The facts of ``context``'s partition matching ``query``, best first (the tool
        ``retrieve_facts`` and auto-recall use it)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        agent, user = partition(context)
        async with self._db().acquire() as connection:
            if query.strip():
                rows = await connection.fetch(_SEARCH, agent, user, query, limit)
            elif recent_when_empty:
                rows = await connection.fetch(_RECENT, agent, user, limit)
            else:
                rows = []
        return [
            {
                "key": row["key"],
                "value": json.loads(row["value"]),
                "metadata": json.loads(row["metadata"]),
                "updated_at": row["updated_at"].isoformat(),
                "score": None if row["score"] is None else round(float(row["score"]), 4),
            }
            for row in rows
        ]


def _required(context: Context | None) -> Context:
    if context is None:
        raise RuntimeError("long_term_memory tools run inside a request (no Context)")
    return context


def _checked_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValueError("key must be a non-empty string")
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"key is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    return key


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last ``role: "user"`` message (text parts joined; ``""`` when none)."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
            )
        return ""
    return ""
