"""``short_term_memory``: conversations kept by the server, and the context window.

A request that carries a conversation id (the ``X-Conversation-Id`` header, or
``metadata.conversation_id`` in the body) gets that conversation's stored messages placed
before its own, so a client may send only its new message; when the request completes, the
messages it added (the client's, then the tool calls, tool results and answer the agent
produced: ``context.transcript``) are appended to the conversation. Every request's messages
are then cut to the window (:func:`robutler_skill_memory.window.trim`) before the model sees
them. Conversations are partitioned by :func:`robutler_skill_memory.partition`: the same id
sent by two callers names two conversations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pydantic

from robutler_core import Context, Skill, hook, tool
from robutler_core.errors import BadRequestError, ServiceUnavailableError

from .conversations import ConversationKey, ConversationStore, open_store
from .identity import partition
from .window import trim

CONVERSATION_HEADER = "x-conversation-id"
"""The request header naming the conversation (HTTP header names are case-insensitive)."""

MAX_CONVERSATION_ID_LENGTH = 256

_SYSTEM_ROLES = frozenset({"system", "developer"})
_STATE = "short_term_memory"


class ShortTermConfig(pydantic.BaseModel):
    """Options of :class:`ShortTermMemorySkill` (``skills: short_term_memory: {...}`` in an
    agents file)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    max_messages: int = pydantic.Field(50, ge=1)
    """Messages sent to the model at most (system messages included)."""
    max_tokens: int | None = pydantic.Field(None, ge=1)
    """Estimated tokens of the messages sent to the model at most (``None``: no limit); see
    :func:`robutler_skill_memory.window.estimate_tokens`."""
    storage: Literal["memory", "postgres"] | None = None
    """Where conversations live: ``"memory"`` (this process; the default without ``dsn``) or
    ``"postgres"`` (the default with ``dsn``)."""
    dsn: str | None = None
    """PostgreSQL server of ``storage: postgres``; unset: ``$ROBUTLER_POSTGRES_DSN``, else the
    embedded PostgreSQL under ``$ROBUTLER_DATA_DIR/postgres``."""
    max_conversations: int = pydantic.Field(1000, ge=1)
    """Conversations kept in process memory at most; the least recently used goes first."""
    max_stored_messages: int = pydantic.Field(1000, ge=1)
    """Messages kept per conversation at most (the oldest whole exchanges go first), in
    either storage."""


@dataclass
class _Request:
    """What the ``on_connection`` hook learnt, for the tools and ``finalize_connection``."""

    key: ConversationKey | None
    history: list[dict[str, Any]] = field(default_factory=list)
    history_positions: set[int] = field(default_factory=set)
    unsent: list[dict[str, Any]] = field(default_factory=list)
    cleared: bool = False


class ShortTermMemorySkill(Skill):
    """Conversations (by conversation id, per caller) and the context window.

    Hooks: ``on_connection`` (priority 90, after authentication hooks set the caller) places
    the stored conversation before the request's messages and trims them to the window;
    ``finalize_connection`` stores what the request added, when it completed.
    Tools: ``get_recent_messages``, ``clear_conversation``.
    """

    config_model = ShortTermConfig

    def __init__(self, config: dict[str, Any] | None = None, scope: Any = "all") -> None:
        super().__init__(config, scope=scope)
        self.settings = ShortTermConfig.model_validate(self.config)
        self.store: ConversationStore | None = None

    @property
    def storage(self) -> str:
        """``"memory"`` or ``"postgres"``."""
        return self.settings.storage or ("postgres" if self.settings.dsn else "memory")

    async def initialize(self, agent: Any) -> None:
        if self.store is None:
            self.store = await open_store(
                storage=self.storage, dsn=self.settings.dsn,
                max_conversations=self.settings.max_conversations,
                max_stored_messages=self.settings.max_stored_messages,
            )

    async def close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            await store.close()

    def _store(self) -> ConversationStore:
        if self.store is None:
            raise RuntimeError("short_term_memory is not initialised (Agent.initialize opens its store)")
        return self.store

    # -- hooks -------------------------------------------------------------------------------
    @hook("on_connection", priority=90)
    async def recall_conversation(self, context: Context) -> None:
        """Place the stored conversation before the request's messages; trim to the window.
        Raises BadRequestError (400) for a bad conversation id, ServiceUnavailableError (503)
        when the conversation's database cannot be reached."""
        conversation_id = conversation_id_of(context)
        if not context.messages:  # an @http call or the agent's description
            return
        key = (*partition(context), conversation_id) if conversation_id else None
        history = await self._load(key) if key else []
        new = context.messages
        lead = next((i for i, m in enumerate(new) if m.get("role") not in _SYSTEM_ROLES), len(new))
        combined = new[:lead] + history + new[lead:]
        window = trim(combined, max_messages=self.settings.max_messages, max_tokens=self.settings.max_tokens)
        in_window = {id(m) for m in window}
        history_ids = {id(m) for m in history}
        context.set(_STATE, _Request(
            key=key, history=history,
            history_positions={i for i, m in enumerate(window) if id(m) in history_ids},
            unsent=[m for m in new if id(m) not in in_window and m.get("role") not in _SYSTEM_ROLES],
        ))
        context.messages = window

    async def _load(self, key: ConversationKey) -> list[dict[str, Any]]:
        """The stored conversation; a database that cannot be reached is a 503
        (``memory_unavailable``): answering without the history would answer another question."""
        from robutler_core.postgres import DatabaseUnavailableError

        try:
            return await self._store().load(key)
        except DatabaseUnavailableError as exc:
            raise ServiceUnavailableError(
                f"short_term_memory cannot load the conversation: {exc}", code="memory_unavailable"
            ) from exc

    @hook("finalize_connection")
    async def store_conversation(self, context: Context) -> None:
        """Append the request's messages to its conversation, when it completed
        (``context.finish_reason`` set): what the client received is what is stored; a
        failed or abandoned request stores nothing."""
        state = context.get(_STATE)
        if not isinstance(state, _Request) or state.key is None or state.cleared or context.finish_reason is None:
            return
        await self._store().append(state.key, _added(state, context))

    # -- tools -------------------------------------------------------------------------------
    @tool
    async def get_recent_messages(
        self, context: Context, limit: Annotated[int, pydantic.Field(ge=1, le=200)] = 20
    ) -> list[dict[str, Any]]:
        """The latest messages of this conversation (stored ones and this request's so far),
        oldest first, including those the context window left out.

        Args:
            limit: how many messages at most (1-200).
        """
        state = context.get(_STATE)
        if not isinstance(state, _Request):
            messages = [m for m in context.messages if m.get("role") not in _SYSTEM_ROLES]
        else:
            messages = state.history + _added(state, context)
        return messages[-limit:]

    @tool
    async def clear_conversation(self, context: Context) -> str:
        """Forget this conversation: its stored messages are deleted, and this request's are
        not stored."""
        state = context.get(_STATE)
        if not isinstance(state, _Request) or state.key is None:
            return (
                "There is no stored conversation to clear: this request names none "
                "(X-Conversation-Id header or metadata.conversation_id)."
            )
        await self._store().clear(state.key)
        state.cleared = True
        return "The conversation was cleared."


def _added(state: _Request, context: Context) -> list[dict[str, Any]]:
    """The messages the request added to its conversation: the client's (those the window left
    out first), then what the tool loop produced; system messages are never stored."""
    transcript = context.transcript or context.messages
    produced = [
        m for i, m in enumerate(transcript)
        if i not in state.history_positions and m.get("role") not in _SYSTEM_ROLES
    ]
    return state.unsent + produced


def conversation_id_of(context: Context) -> str | None:
    """The request's conversation id: the ``X-Conversation-Id`` header or
    ``metadata.conversation_id`` of the body (``context.params["metadata"]``), or ``None``.

    ``conversation_id`` is taken out of ``metadata`` (and ``metadata`` out of the parameters
    when nothing else is left in it), so the model is not sent it. Raises BadRequestError
    (400) when the two differ, or for an id that is not a non-empty string of at most
    :data:`MAX_CONVERSATION_ID_LENGTH` characters.
    """
    header = context.headers.get(CONVERSATION_HEADER)
    body = None
    metadata = context.params.get("metadata")
    if isinstance(metadata, dict) and "conversation_id" in metadata:
        metadata = dict(metadata)
        body = metadata.pop("conversation_id")
        if metadata:
            context.params["metadata"] = metadata
        else:
            del context.params["metadata"]
        if not isinstance(body, str) or not body or len(body) > MAX_CONVERSATION_ID_LENGTH:
            raise BadRequestError(
                f"metadata.conversation_id must be a non-empty string of at most "
                f"{MAX_CONVERSATION_ID_LENGTH} characters", param="metadata.conversation_id",
                code="invalid_conversation_id",
            )
    if header is not None and (not header or len(header) > MAX_CONVERSATION_ID_LENGTH):
        raise BadRequestError(
            f"the X-Conversation-Id header must be a non-empty string of at most "
            f"{MAX_CONVERSATION_ID_LENGTH} characters", code="invalid_conversation_id",
        )
    if header is not None and body is not None and header != body:
        raise BadRequestError(
            f"the X-Conversation-Id header ('{header}') and metadata.conversation_id ('{body}') "
            "name different conversations", param="metadata.conversation_id", code="invalid_conversation_id",
        )
    return header if header is not None else body
