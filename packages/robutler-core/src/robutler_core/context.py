"""The per-request :class:`Context` and :func:`get_context`.

One Context exists per request. It is reachable from a :class:`contextvars.ContextVar`, so
concurrent requests never see each other's, and it is injected into any tool, hook or prompt
parameter named ``context``.
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import PermissionDeniedError
from .scopes import scope_admits
from .wire import new_completion_id

if TYPE_CHECKING:
    from .agent import Agent

_current_context: ContextVar[Context | None] = ContextVar("robutler_context", default=None)


def get_context() -> Context | None:
    """The Context of the request being served in this task, or ``None`` outside a request."""
    return _current_context.get()


@dataclass
class UsageRecord:
    """One usage record: ``credits`` (a number in the agent's billing unit) and why.

    ``kind`` is free-form (``"llm"``, ``"tool"``, ...); ``metadata`` holds e.g. token counts.
    """

    credits: float
    reason: str
    kind: str = "custom"
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)

    def set_cost_usd(self, cost_usd: float | None) -> None:
        """Price the record: ``credits`` becomes the cost in US dollars (0 when unknown) and
        ``metadata["cost_usd"]`` the cost (``None`` when unknown)."""
        self.credits = cost_usd or 0
        self.metadata["cost_usd"] = cost_usd


@dataclass
class Context:
    """Everything about one request: what was asked, who asked, what the agent can do.

    Attributes:
        agent: the :class:`~robutler_core.Agent` serving the request.
        messages: the request's messages, in OpenAI's chat format (list of dicts).
        stream: whether the client asked for a streamed answer.
        tools: the request's external tools (OpenAI ``tools`` entries), run by the client.
        params: other request parameters passed to the model (``temperature``, ...).
        auth_scope: the caller's scope (``"all"`` until a hook sets it).
        peer_user_id: the caller's identity, when an auth hook established it.
        payment_token: the caller's payment token, when one came with the request.
        headers: the HTTP request's headers, names lower-cased (empty outside a server).
        handoff_depth: 0 for a client's request, n for a request made by the n-th nested
            handoff to a local agent.
        answered_by: ``"provider/model"`` of each model call of the request, in order (a
            fallback model shows here when it answered).
        request_id: ``req_`` and 32 hex digits, unique to the request (``None`` or left out:
            made from ``os.urandom`` when first read, then the same on every read).
        completion_id: the ``id`` of the ``chat.completion`` being produced.
        usage_records: :class:`UsageRecord` entries added with :meth:`track_usage`.
        transcript: the request's conversation as the tool loop ran it (OpenAI chat
            messages): the incoming messages as the model saw them (after ``on_connection``
            and ``on_message``; the agent's system prompt is not included), each assistant
            message with server-side ``tool_calls`` followed by its ``role: "tool"``
            results, and last the answer as the client received it (after ``on_message``;
            its ``content`` joins the text of every turn, so text of a tool-calling turn
            shows in its own message too). Empty until the loop starts; ``finalize_connection``
            hooks read it (memory stores it).
        finish_reason: the answer's ``finish_reason`` (``"stop"``, ``"tool_calls"``,
            ``"length"``...) once the request completed; ``None`` while it runs and after an
            error or a client disconnect.
    """

    agent: Agent
    messages: list[dict[str, Any]]
    stream: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    auth_scope: str = "all"
    peer_user_id: str | None = None
    payment_token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    handoff_depth: int = 0
    answered_by: list[str] = field(default_factory=list)
    request_id: str = None  # type: ignore[assignment]  # made on first read: see _request_id
    completion_id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    usage_records: list[UsageRecord] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    _store: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- custom data -------------------------------------------------------------------------
    _ATTRIBUTES = ("auth_scope", "peer_user_id", "payment_token")

    def get(self, key: str, default: Any = None) -> Any:
        """Read custom data set with :meth:`set` (``auth_scope`` & co. read the attribute)."""
        if key in self._ATTRIBUTES:
            return getattr(self, key)
        return self._store.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Store custom data for the rest of the request (``auth_scope`` & co. set the attribute)."""
        if key in self._ATTRIBUTES:
            setattr(self, key, value)
        else:
            self._store[key] = value

    # -- usage -------------------------------------------------------------------------------
    def track_usage(
        self,
        credits: float,
        reason: str,
        kind: str = "custom",
        metadata: dict[str, Any] | None = None,
    ) -> UsageRecord:
        """Record usage for billing; ``finalize_connection`` hooks read :attr:`usage_records`."""
        record = UsageRecord(credits=credits, reason=reason, kind=kind, metadata=metadata or {})
        self.usage_records.append(record)
        return record

    def track_llm_usage(
        self, model: str, usage: dict[str, Any] | None, cost_usd: float | None = None
    ) -> UsageRecord | None:
        """Record one model call's ``usage`` (OpenAI ``usage`` dict) as a ``kind="llm"`` record.

        ``credits`` is the cost in US dollars (0 when unknown); ``metadata`` holds ``model``,
        ``prompt_tokens`` (cached ones included, as OpenAI counts them), ``completion_tokens``,
        ``total_tokens``, ``cached_tokens`` and ``cache_creation_tokens`` (from
        ``prompt_tokens_details``; 0 when not reported) and ``cost_usd`` (``None`` when
        unknown). Nothing is recorded when ``usage`` is empty.
        """
        if not usage:
            return None
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            cached, created = int(details.get("cached_tokens") or 0), int(details.get("cache_creation_tokens") or 0)
        else:
            cached = created = 0
        metadata = {
            "model": model, "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"), "total_tokens": usage.get("total_tokens"),
            "cached_tokens": cached, "cache_creation_tokens": created, "cost_usd": cost_usd,
        }
        record = UsageRecord(cost_usd or 0, f"model call to {model}", "llm", metadata)
        self.usage_records.append(record)
        return record

    # -- access ------------------------------------------------------------------------------
    def require_scope(self, required: frozenset[str] | None, subject: str) -> None:
        """Raise PermissionDeniedError (403, code ``scope_not_allowed``) unless ``required``
        (a normalised scope, ``None`` = everyone) admits :attr:`auth_scope`; ``subject``
        starts the message ("agent 'x' is open to")."""
        if not scope_admits(required, self.auth_scope):
            raise PermissionDeniedError(
                f"{subject} the scope(s) {', '.join(sorted(required or ()))}; "
                f"the caller's scope is '{self.auth_scope}'",
                code="scope_not_allowed",
            )

    # -- agent capabilities ------------------------------------------------------------------
    @property
    def agent_skills(self) -> dict[str, Any]:
        """The agent's skills by name."""
        return dict(self.agent.skills)

    @property
    def agent_tools(self) -> list[Any]:
        """The agent's server-side tools that the caller's scope admits."""
        return self.agent.tools_for_scope(self.auth_scope)


def _get_request_id(self: Context) -> str:
    try:
        return self.__dict__["_request_id"]
    except KeyError:
        request_id = self.__dict__["_request_id"] = f"req_{os.urandom(16).hex()}"
        return request_id


def _set_request_id(self: Context, value: str | None) -> None:
    if value is None:
        self.__dict__.pop("_request_id", None)
    else:
        self.__dict__["_request_id"] = value


# Context.request_id: a dataclass field (in the constructor, fields(), repr) whose value is
# made on first read, so that a request that never reads it (most: robutler-server has the
# X-Request-ID) spares the os.urandom read.
Context.request_id = property(_get_request_id, _set_request_id)  # type: ignore[assignment]
