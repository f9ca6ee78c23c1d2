"""Where ``short_term_memory`` keeps conversations: process memory, or PostgreSQL.

A conversation is a list of OpenAI chat messages (no system messages), keyed by
:data:`ConversationKey` ``(agent name, caller, conversation id)``; the first two are
:func:`robutler_skill_memory.partition` of the request, so one caller never reaches another's
conversation whatever id it sends. Both stores *append* a request's messages (two requests of
one conversation at once both land, one after the other; neither overwrites the other) and
keep at most ``max_stored_messages`` messages per conversation, dropping the oldest whole
groups as :func:`robutler_skill_memory.window.trim` does.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from .window import trim

if TYPE_CHECKING:
    from robutler_core.postgres import Database

ConversationKey = tuple[str, str, str]
"""``(agent name, caller ("" when anonymous), conversation id)``."""

Message = dict[str, Any]


class ConversationStore(Protocol):
    """What :class:`~robutler_skill_memory.short_term.ShortTermMemorySkill` needs of a store."""

    async def load(self, key: ConversationKey) -> list[Message]:
        """The conversation's messages, oldest first (``[]`` when there is none)."""

    async def append(self, key: ConversationKey, messages: list[Message]) -> None:
        """Add ``messages`` (JSON-able OpenAI chat messages) at the end of the conversation."""

    async def clear(self, key: ConversationKey) -> None:
        """Delete the conversation."""

    async def close(self) -> None:
        """Release connections."""


def _copy(messages: list[Message]) -> list[Message]:
    """A deep, JSON-clean copy (what a database would give back)."""
    return json.loads(json.dumps(messages, default=str))


class MemoryConversations:
    """Conversations in this process's memory: lost at restart and not shared by workers.

    Bounded: at most ``max_conversations`` conversations (the least recently used one is
    dropped first) of at most ``max_stored_messages`` messages each.
    """

    def __init__(self, *, max_conversations: int, max_stored_messages: int) -> None:
        self.max_conversations = max_conversations
        self.max_stored_messages = max_stored_messages
        self._conversations: OrderedDict[ConversationKey, list[Message]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._conversations)

    async def load(self, key: ConversationKey) -> list[Message]:
        messages = self._conversations.get(key)
        if messages is None:
            return []
        self._conversations.move_to_end(key)
        return _copy(messages)

    async def append(self, key: ConversationKey, messages: list[Message]) -> None:
        stored = self._conversations.pop(key, []) + _copy(messages)
        self._conversations[key] = trim(stored, max_messages=self.max_stored_messages)
        while len(self._conversations) > self.max_conversations:
            self._conversations.popitem(last=False)

    async def clear(self, key: ConversationKey) -> None:
        self._conversations.pop(key, None)

    async def close(self) -> None:
        self._conversations.clear()


MIGRATIONS = [
    """
    CREATE TABLE short_term_messages (
        id bigserial PRIMARY KEY,
        agent text NOT NULL,
        user_id text NOT NULL,
        conversation_id text NOT NULL,
        message jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX short_term_messages_conversation
        ON short_term_messages (agent, user_id, conversation_id, id);
    """,
]
"""Schema versions of the ``short_term`` namespace (see ``Database.migrate``)."""


class PostgresConversations:
    """Conversations in PostgreSQL (table ``short_term_messages``, one row per message): they
    survive restarts, and every worker or replica on the same database shares them.

    An append takes a transaction-level advisory lock on the conversation, so the messages of
    one request stay together and in order when requests of one conversation end at once.
    Errors reaching the database raise ``DatabaseUnavailableError``.
    """

    def __init__(self, database: Database, *, max_stored_messages: int) -> None:
        self.database = database
        self.max_stored_messages = max_stored_messages

    @classmethod
    async def open(cls, dsn: str | None, *, max_stored_messages: int) -> PostgresConversations:
        """Connect (``postgres.connect``: ``dsn``, ``$ROBUTLER_POSTGRES_DSN`` or the embedded
        server) and apply :data:`MIGRATIONS`."""
        from robutler_core.postgres import connect

        database = await connect(dsn, name="short_term_memory")
        try:
            await database.migrate("short_term", MIGRATIONS)
        except BaseException:
            await database.close()
            raise
        return cls(database, max_stored_messages=max_stored_messages)

    async def load(self, key: ConversationKey) -> list[Message]:
        async with self.database.acquire() as connection:
            rows = await connection.fetch(
                "SELECT message::text FROM short_term_messages"
                " WHERE agent = $1 AND user_id = $2 AND conversation_id = $3 ORDER BY id",
                *key,
            )
        return [json.loads(row[0]) for row in rows]

    async def append(self, key: ConversationKey, messages: list[Message]) -> None:
        if not messages:
            return
        rows = [(*key, json.dumps(m, default=str)) for m in messages]
        async with self.database.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", json.dumps(key)
            )
            await connection.executemany(
                "INSERT INTO short_term_messages (agent, user_id, conversation_id, message)"
                " VALUES ($1, $2, $3, $4::jsonb)",
                rows,
            )
            count = await connection.fetchval(
                "SELECT count(*) FROM short_term_messages"
                " WHERE agent = $1 AND user_id = $2 AND conversation_id = $3",
                *key,
            )
            if count > self.max_stored_messages:
                await self._prune(connection, key)

    async def _prune(self, connection: Any, key: ConversationKey) -> None:
        """Delete the oldest messages beyond ``max_stored_messages`` (whole groups)."""
        rows = await connection.fetch(
            "SELECT id, message::text FROM short_term_messages"
            " WHERE agent = $1 AND user_id = $2 AND conversation_id = $3 ORDER BY id",
            *key,
        )
        messages = [json.loads(row[1]) for row in rows]
        kept = trim(messages, max_messages=self.max_stored_messages)
        first_kept = rows[len(messages) - len(kept)]["id"] if kept else None
        await connection.execute(
            "DELETE FROM short_term_messages WHERE agent = $1 AND user_id = $2"
            " AND conversation_id = $3 AND ($4::bigint IS NULL OR id < $4)",
            *key, first_kept,
        )

    async def clear(self, key: ConversationKey) -> None:
        async with self.database.acquire() as connection:
            await connection.execute(
                "DELETE FROM short_term_messages WHERE agent = $1 AND user_id = $2 AND conversation_id = $3",
                *key,
            )

    async def close(self) -> None:
        await self.database.close()


async def open_store(
    *, storage: str, dsn: str | None, max_conversations: int, max_stored_messages: int
) -> ConversationStore:
    """:class:`PostgresConversations` (``dsn``, else ``$ROBUTLER_POSTGRES_DSN``, else the
    embedded server) when ``storage`` is ``"postgres"``, else :class:`MemoryConversations`."""
    if storage == "postgres":
        return await PostgresConversations.open(dsn, max_stored_messages=max_stored_messages)
    return MemoryConversations(max_conversations=max_conversations, max_stored_messages=max_stored_messages)


__all__ = [
    "ConversationKey", "ConversationStore", "MemoryConversations", "PostgresConversations", "open_store",
    "MIGRATIONS",
]
