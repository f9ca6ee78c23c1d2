"""Limits that protect the server: request size, message and tool counts, rate limits,
concurrency per agent, and the thread pool of synchronous tools.

- A request body over ``max_body_bytes`` is answered 413 before it is parsed: at once when its
  ``Content-Length`` says so, else as soon as the bytes read pass the limit.
- A chat completion or response request with more than ``max_messages`` messages or
  ``max_tools`` tools is answered 400 (``param`` ``messages`` or ``tools``).
- An agent's ``rate_limit`` (:class:`robutler_server.config.AgentLimits`) counts each
  caller's requests to it, its ``total_rate_limit`` those of all callers together
  (:mod:`robutler_server.ratelimit`); over either: 429 with ``Retry-After``. The caller is the ``peer_user_id`` an ``on_connection`` hook set, else the
  client's address; so the check runs as the agent's last ``on_connection`` hook
  (priority :data:`GUARD_PRIORITY`), after authentication.
- An agent's ``max_concurrent_requests``: a request beyond it is answered 503 with
  ``Retry-After`` (streams count until their last event).
- Synchronous tools of every agent run on one bounded pool of ``tool_threads`` threads
  (:attr:`robutler_core.Agent.tool_executor`), not on the event loop's default executor, which
  DNS lookups, pricing and SDK work share: a hung tool cannot stall those. A tool past its
  timeout gives the model an error, but its thread (Python cannot stop one) stays busy until
  the function returns.

Only requests that ask a model (``POST .../chat/completions``, ``POST .../responses``) are
counted; agent descriptions, model lists and handoffs between agents of the server are not.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Awaitable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from robutler_core import Agent, Context
from robutler_core.errors import BadRequestError, RobutlerError

from .config import AgentLimits, ServerConfig
from .ratelimit import RateLimiter, rate_limit_storage

GUARD_PRIORITY = 1_000_000
"""Priority of the limits' ``on_connection`` hook: after every ordinary hook (auth included)."""

_HOLDS_SLOT = "robutler_server.concurrency_slot"


class RequestTooLargeError(RobutlerError):
    """413: the request body is larger than the server accepts."""

    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ServerOverloadedError(RobutlerError):
    """503: the agent already serves its ``max_concurrent_requests``; ``retry_after`` seconds."""

    status_code = 503
    type = "service_unavailable"
    code = "too_many_concurrent_requests"

    def __init__(self, message: str, *, retry_after: float = 1, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class _RequestInfo(NamedTuple):
    client: str
    limited: bool


_request: contextvars.ContextVar[_RequestInfo | None] = contextvars.ContextVar("robutler_request", default=None)


class Guards:
    """The limits of one app (:func:`install_guards`); an async context manager for the app's
    lifetime (at its end the tool pool stops taking work, running tools are not waited for,
    and the rate-limit storage's connections close; entered again, a new pool starts)."""

    def __init__(self, server: ServerConfig, limits: Mapping[str, AgentLimits]) -> None:
        self.server = server
        self.limits = dict(limits)
        self.rate_limiter = RateLimiter(rate_limit_storage(server.rate_limit_storage))
        self.tool_pool = self._new_pool()
        self.in_flight: dict[str, int] = {}
        self._agents: weakref.WeakSet[Agent] = weakref.WeakSet()  # not a list: agents come and go (reloads, resolve_agent)
        self._stopped = False

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.server.tool_threads, thread_name_prefix="robutler-tool")

    def attach(self, agent: Agent, limits: AgentLimits | None = None) -> None:
        """Subject ``agent`` to the limits (``limits`` replaces those given for its name) and
        run its synchronous tools on the server's pool."""
        if limits is not None:
            self.limits[agent.name] = limits
        agent.tool_executor = self.tool_pool
        self._agents.add(agent)
        agent.register_hook("on_connection", self._admit, priority=GUARD_PRIORITY)
        agent.register_hook("finalize_connection", self._release, priority=GUARD_PRIORITY)

    def _admit(self, context: Context) -> Awaitable[None] | None:
        """The limits' ``on_connection`` hook; sync (no coroutine per request) unless a rate
        limit must be counted, which it returns to be awaited."""
        request = _request.get()
        if request is None or not request.limited or context.handoff_depth:
            return None
        server = self.server
        if len(context.messages) > server.max_messages:
            raise BadRequestError(
                f"the request has {len(context.messages)} messages; this server accepts at most "
                f"{server.max_messages}", param="messages", code="too_many_messages",
            )
        if len(context.tools) > server.max_tools:
            raise BadRequestError(
                f"the request has {len(context.tools)} tools; this server accepts at most {server.max_tools}",
                param="tools", code="too_many_tools",
            )
        name = context.agent.name
        limits = self.limits.get(name)
        if limits is None:
            return None
        if limits.rate_limit or limits.total_rate_limit:
            return self._rate_limited(context, limits, request.client)
        self._take_slot(context, limits)
        return None

    async def _rate_limited(self, context: Context, limits: AgentLimits, client: str) -> None:
        name = context.agent.name
        if limits.rate_limit:
            await self.rate_limiter.hit(limits.rate_limit, name, context.peer_user_id or client)
        if limits.total_rate_limit:
            await self.rate_limiter.hit(
                limits.total_rate_limit, name, "", message=f"agent '{name}' is at its total rate limit of {{item}}"
            )
        self._take_slot(context, limits)

    def _take_slot(self, context: Context, limits: AgentLimits) -> None:
        name = context.agent.name
        if limits.max_concurrent_requests:
            running = self.in_flight.get(name, 0)
            if running >= limits.max_concurrent_requests:
                raise ServerOverloadedError(
                    f"agent '{name}' is serving its maximum of {limits.max_concurrent_requests} "
                    "concurrent requests; retry shortly"
                )
            self.in_flight[name] = running + 1
            context.set(_HOLDS_SLOT, True)

    def _release(self, context: Context) -> None:
        if context.get(_HOLDS_SLOT):
            context.set(_HOLDS_SLOT, False)
            self.in_flight[context.agent.name] -= 1

    async def __aenter__(self) -> Guards:
        if self._stopped:
            self._stopped = False
            self.tool_pool = self._new_pool()
            for agent in self._agents:
                agent.tool_executor = self.tool_pool
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._stopped = True
        self.tool_pool.shutdown(wait=False, cancel_futures=True)
        await self.rate_limiter.close()


def too_large(size: int | None, limit: int) -> RequestTooLargeError:
    """The 413 for a body of ``size`` bytes (``None``: unknown, past ``limit`` so far)."""
    said = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return RequestTooLargeError(
        f"the request body ({said}) is larger than this server accepts ({limit} bytes: --max-body-bytes)"
    )


def counting(receive: Any, limit: int) -> Any:
    """``receive`` that raises 413 (an HTTPException, which FastAPI's body reading passes on)
    once the body read passes ``limit`` bytes."""
    read = 0

    async def counted() -> dict[str, Any]:
        nonlocal read
        message = await receive()
        if message["type"] == "http.request":
            read += len(message.get("body", b""))
            if read > limit:
                raise HTTPException(413, too_large(None, limit).message)
        return message

    return counted


def install_guards(
    app: Any, agents: Mapping[str, Agent], server: ServerConfig, limits: Mapping[str, AgentLimits]
) -> Guards:
    """Install the limits on ``app`` and its ``agents`` (:class:`Guards`, kept as
    ``app.state.guards``) and CORS for ``server.cors_origins`` (:func:`with_cors`). The body
    size limit, the request facts the limits' hook reads (:func:`admitting`) and the SSE
    keep-alives are applied by the server's ASGI middleware (:mod:`robutler_server.front`).
    Returns the :class:`Guards`, to enter with the app's lifespan."""
    guards = Guards(server, limits)
    for agent in agents.values():
        guards.attach(agent)
    if server.cors_origins:
        app.add_middleware(CORSMiddleware, **_cors_options(server))
    app.state.guards = guards
    return guards


def with_cors(app: Any, server: ServerConfig) -> Any:
    """``app`` behind Starlette's ``CORSMiddleware`` for ``server.cors_origins`` (any method
    and header, the limits' and ids' headers exposed), or ``app`` itself when there are none."""
    return CORSMiddleware(app, **_cors_options(server)) if server.cors_origins else app


def _cors_options(server: ServerConfig) -> dict[str, Any]:
    return {
        "allow_origins": list(server.cors_origins), "allow_methods": ["*"], "allow_headers": ["*"],
        "expose_headers": ["retry-after", "x-request-id", "x-robutler-model"],
    }


def admitting(client: str, limited: bool) -> contextvars.Token[_RequestInfo | None]:
    """Tell the limits' hook about the current request: the client's address and whether it
    asks a model (only those are limited); returns the token to reset."""
    return _request.set(_RequestInfo(client, limited))


def admitted(token: contextvars.Token[_RequestInfo | None]) -> None:
    _request.reset(token)
