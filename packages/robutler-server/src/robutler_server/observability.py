"""Request ids, metrics, traces and the access log of every request: what the server's ASGI
middleware (:mod:`robutler_server.front`) keeps of a request, and a few lifecycle hooks
registered on each served agent.

- ``X-Request-ID``: taken from the request (up to 128 printable ASCII characters) or generated
  (32 hex digits), echoed on the response and on every log line of the request
  (:mod:`robutler_server.logs`), with asgi-correlation-id's ``correlation_id``.
- Metrics (:mod:`robutler_server.metrics`) and spans (:mod:`robutler_server.tracing`, when
  enabled) of requests, model calls and tool calls.
- A request whose client goes away before its answer ends (a stream cut off) is logged at INFO
  with status 499 and counted in ``robutler_client_disconnects_total``.
- Shutdown: :meth:`Observability.wait_idle` waits for the requests in flight (the lifespan calls
  it before closing the agents, so a request cancelled at the graceful-shutdown deadline still
  runs its ``finalize_connection`` against open skills).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from robutler_core import Agent, Context

from .metrics import AgentMetrics, Metrics

logger = logging.getLogger("robutler_server")

REQUEST_ID_HEADER = "X-Request-ID"
FIRST = -(10**9)
LAST = 10**9


def valid_request_id(value: str) -> bool:
    """Up to 128 printable ASCII characters, no spaces; others are replaced by a generated id."""
    return 0 < len(value) <= 128 and all(33 <= ord(c) < 127 for c in value)


@dataclass(slots=True)
class RequestState:
    """What the middleware and the hooks know of one request."""

    start: float
    start_ns: int = 0  # with tracing only
    agent: str | None = None
    metrics: AgentMetrics | None = None  # the agent's, once the request has found its agent
    span: Any = None
    token: Any = None
    first_chunk: bool = False
    mark_ns: int = 0  # where the next model call's span starts
    spanned: int = 0  # llm usage records already given a span
    tools: dict[str, tuple[Any, float]] = field(default_factory=dict)


_current: ContextVar[RequestState | None] = ContextVar("robutler_server_request", default=None)


class Observability:
    """The server's instrumentation; ``tracing`` is a :class:`robutler_server.tracing.Tracing`
    or ``None``."""

    def __init__(self, metrics: Metrics, tracing: Any = None) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    def agent_resolved(self, agent: Agent) -> None:
        """The current request is for ``agent`` (called when a route finds it)."""
        state = _current.get()
        if state is None or state.agent is not None:
            return
        state.agent = agent.name
        state.metrics = self.metrics.agent(agent.name)
        state.metrics.in_flight.inc()
        if state.span is not None:
            self.tracing.name_request(state.span, agent.name)

    def instrument(self, agent: Agent) -> None:
        """Register the tool-call and end-of-request hooks on ``agent`` (first before tool calls,
        last after them, so they time what the other hooks do too)."""
        agent.register_hook("before_toolcall", self._before_tool, priority=FIRST)
        agent.register_hook("after_toolcall", self._after_tool, priority=LAST)
        agent.register_hook("finalize_connection", self._finalize, priority=LAST)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight, at most ``timeout`` seconds; whether it is."""
        if self.in_flight == 0:
            return True
        self._idle = self._idle or asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    # -- hooks -------------------------------------------------------------------------------
    def _before_tool(self, context: Context, tool_call: dict[str, Any]) -> None:
        state = _current.get()
        if state is None:
            return
        now = time.perf_counter()
        if self.tracing is not None and state.span is not None:
            self._model_spans(context, state, time.time_ns())
            name = self._tool_label(context, tool_call)
            span = self.tracing.start_tool(state.span, name, str(tool_call.get("id", "")))
        else:
            span = None
        state.tools[str(tool_call.get("id", ""))] = (span, now)

    def _after_tool(self, context: Context, tool_call: dict[str, Any], result: Any) -> None:
        state = _current.get()
        if state is None or state.agent is None:
            return
        span, started = state.tools.pop(str(tool_call.get("id", "")), (None, None))
        name = self._tool_label(context, tool_call)
        failed = isinstance(result, str) and result.startswith("Error:")
        self.metrics.tool_calls.labels(state.agent, name, "error" if failed else "ok").inc()
        if started is not None:
            self.metrics.tool_duration.labels(state.agent, name).observe(time.perf_counter() - started)
        if span is not None:
            self.tracing.end_tool(span, failed)
        state.mark_ns = time.time_ns()

    def _finalize(self, context: Context) -> None:
        state = _current.get()
        if state is None or state.agent is None:
            return
        for record in context.usage_records:
            if record.kind == "llm":
                self.metrics.model_call(state.agent, record.metadata)
        if self.tracing is not None and state.span is not None:
            self._model_spans(context, state, time.time_ns())

    def _model_spans(self, context: Context, state: RequestState, end_ns: int) -> None:
        records = [r for r in context.usage_records if r.kind == "llm"]
        for record in records[state.spanned:]:
            self.tracing.model_call(state.span, record.metadata, state.mark_ns, end_ns)
        state.spanned = len(records)

    @staticmethod
    def _tool_label(context: Context, tool_call: dict[str, Any]) -> str:
        """The tool's name when the agent has such a tool, else ``unknown`` (bounded labels)."""
        name = str((tool_call.get("function") or {}).get("name", ""))
        agent = context.agent
        known = agent is not None and any(t.name == name for t in agent.tools_for_scope(context.auth_scope))
        return name if known else "unknown"

    # -- middleware bookkeeping (robutler_server.front) -----------------------------------------
    def _leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None
