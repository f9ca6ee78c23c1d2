"""One MCP server as the skill sees it: a session shared by every request, opened at start-up,
restarted or reconnected after a fault, and its tool list kept current.

Each session lives in its own asyncio task, which enters the SDK's ``mcp.Client`` (and, for
stdio, the server process) and leaves it in that same task, whatever task asked for it; a
request only sends calls through it. States: ``starting``, ``connected``, ``down`` (the
connection was lost or could not be made: ``error`` says why), ``closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .config import ServerConfig

logger = logging.getLogger("robutler_skill_mcp")

BACKOFF_FIRST = 1.0
"""Seconds before the second attempt to reach a server that failed; doubled per failure."""
BACKOFF_MAX = 30.0
"""The longest wait between two attempts, in seconds."""
_PAGES = 100
"""Most ``tools/list`` pages read (a paginator that never ends cannot hang start-up)."""

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream,
    httpx2.TransportError,
)
"""Exceptions of a call that mean the connection is gone (besides ``MCPError`` with code
``CONNECTION_CLOSED``)."""


class ServerUnavailable(Exception):
    """The MCP server cannot be reached now; the message says why and when the next try is."""


class ToolCallTimeout(Exception):
    """A tool call took longer than the server's ``timeout``; it was cancelled."""


class ServerConnection:
    """The session with one configured MCP server.

    Args:
        name: the server's name in the skill's config.
        config: its :class:`~robutler_skill_mcp.config.ServerConfig`.
        on_tools: called (synchronously, on the event loop) after :attr:`tools` changed:
            listed after a connect, refreshed after ``notifications/tools/list_changed``,
            dropped (``None``) when a restart failed.
        mode: the SDK client's ``mode``: ``auto`` (``server/discover``, falling back to the
            ``initialize`` handshake of older servers) or ``legacy`` (the handshake only).
    """

    def __init__(
        self, name: str, config: ServerConfig, on_tools: Callable[[ServerConnection], None], mode: str = "auto"
    ) -> None:
        self.name = name
        self.config = config
        self.mode = mode
        self.state = "starting"
        self.error: str | None = None
        self.tools: list[mcp_types.Tool] | None = None
        self._on_tools = on_tools
        self._client: Client | None = None
        self._session: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failures = 0
        self._next_attempt = 0.0
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- lifetime ----------------------------------------------------------------------------
    async def start(self) -> bool:
        """Connect and list the tools; True when that worked. A failure is logged, the server
        is ``down`` with no tools, and a background task retries with back-off (its tools
        appear when it answers)."""
        async with self._lock:
            try:
                await self._connect()
                return True
            except Exception as exc:
                self._failed(exc)
        logger.warning(
            "MCP server '%s' (%s) is unavailable: %s; retrying in the background",
            self.name, self.config.kind, self.error,
        )
        self._spawn(self._retry_until_connected())
        return False

    async def close(self) -> None:
        """End the session (a stdio server is stopped: stdin closed, then SIGTERM, SIGKILL)
        and the background tasks. Idempotent."""
        self._closing = True
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._end_session()
        self.state = "closed"

    # -- calls -------------------------------------------------------------------------------
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """``tools/call`` on the shared session, within ``config.timeout`` seconds (a
        restart included). A ``down`` server is restarted first when its back-off allows.

        Raises ToolCallTimeout (the call was cancelled), ServerUnavailable (the server is down,
        or the connection was lost during the call: the next call reconnects) or ``MCPError``
        (the server refused the request).
        """
        try:
            async with asyncio.timeout(self.config.timeout):
                client = self._client if self.state == "connected" and self._client is not None else await self._restart()
                lost = self._lost
                try:
                    return await client.call_tool(name, arguments)
                except (MCPError, *CONNECTION_ERRORS) as exc:
                    if isinstance(exc, MCPError) and exc.code != mcp_types.CONNECTION_CLOSED:
                        raise
                    self._connection_lost(lost)
                    raise ServerUnavailable(
                        f"MCP server '{self.name}': the connection was lost during the call "
                        f"({_describe(exc)}); the next call reconnects"
                    ) from exc
        except TimeoutError:
            raise ToolCallTimeout(
                f"MCP server '{self.name}' did not answer tool '{name}' within {self.config.timeout:g} s; "
                "the call was cancelled"
            ) from None

    async def _restart(self) -> Client:
        async with self._lock:
            if self.state == "connected" and self._client is not None:
                return self._client
            if self._closing:
                raise ServerUnavailable(f"MCP server '{self.name}' is closed")
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                raise ServerUnavailable(
                    f"MCP server '{self.name}' is down ({self.error}); next attempt in {wait:.1f} s"
                )
            logger.info("MCP server '%s': reconnecting (%s)", self.name, self.error)
            try:
                await self._connect()
            except Exception as exc:
                self._failed(exc)
                self.tools = None  # a server that does not come back loses its tools until it does
                self._on_tools(self)
                self._spawn(self._retry_until_connected())
                raise ServerUnavailable(f"MCP server '{self.name}' is down: {self.error}") from None
            assert self._client is not None
            return self._client

    # -- sessions ----------------------------------------------------------------------------
    async def _connect(self) -> None:
        """Open a new session (ending the old one) and list the tools; raises the failure."""
        await self._end_session()
        self._stop, self._lost = asyncio.Event(), asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session = asyncio.create_task(
            self._run_session(ready, self._stop, self._lost), name=f"robutler-mcp:{self.name}"
        )
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await asyncio.shield(ready)
        except BaseException as exc:
            self._stop.set()
            await asyncio.gather(session, return_exceptions=True)
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"no answer within {self.config.connect_timeout:g} s") from None
            raise
        self._session = session
        self.state, self.error, self._failures = "connected", None, 0
        self._on_tools(self)

    async def _end_session(self) -> None:
        """Stop the session task and wait for it (a stdio server's shutdown is bounded by the
        SDK: about 6 s at most); one that does not end within 10 s is cancelled."""
        session, self._session = self._session, None
        if session is not None:
            self._stop.set()
            done, _ = await asyncio.wait({session}, timeout=10)
            if not done:
                session.cancel()
                await asyncio.gather(session, return_exceptions=True)
        self._client = None

    def _connection_lost(self, lost: asyncio.Event) -> None:
        """The session whose ``lost`` event this is has lost its connection (its transport
        ended, or a call hit a closed connection): unless it was already replaced or is being
        stopped, the server is ``down`` from now on, so the next call restarts it."""
        if lost.is_set():
            return
        lost.set()
        if lost is self._lost and self.state == "connected" and not self._stop.is_set() and not self._closing:
            self.state, self.error, self._client = "down", "the connection was lost", None
            logger.warning("MCP server '%s': the connection was lost; it restarts on the next call", self.name)

    async def _run_session(self, ready: asyncio.Future[None], stop: asyncio.Event, lost: asyncio.Event) -> None:
        """The session's task: enter the client, list the tools, serve until ``stop`` (close,
        reconnect) or ``lost`` (the transport ended, a call hit a dead connection)."""
        listener: asyncio.Task[None] | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack, lost)
                client = await stack.enter_async_context(
                    Client(transport, cache=None, message_handler=self._on_message, mode=self.mode)
                )
                self.tools = await _list_tools(client)
                self._client = client
                ready.set_result(None)
                capabilities = client.server_capabilities.tools
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS and capabilities and capabilities.list_changed:
                    listener = asyncio.create_task(self._listen(client))
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in [*waiters, *([listener] if listener else [])]:
                        waiter.cancel()
                    await asyncio.gather(*waiters, *([listener] if listener else []), return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported to the waiter or logged
            if not ready.done():
                ready.set_exception(_leaf(exc))
            elif not stop.is_set():
                logger.debug("MCP server '%s': session ended with %r", self.name, exc)
        finally:
            self._connection_lost(lost)  # the session ended without being asked to: lost
            if self._stop is stop:
                self._client = None

    async def _transport(self, stack: contextlib.AsyncExitStack, lost: asyncio.Event) -> Any:
        config = self.config
        if config.command is not None:
            command, args, env = config.command, list(config.args), dict(config.env or {})
            if sys.platform.startswith("linux"):  # killed with us, even if we are killed
                command, args = sys.executable, ["-m", "robutler_skill_mcp.launcher", command, *args]
                env["ROBUTLER_MCP_PARENT_PID"] = str(os.getpid())
            params = StdioServerParameters(command=command, args=args, env=env, cwd=config.cwd)
            inner = stdio_client(params)
        elif config.transport == "sse":
            inner = sse_client(config.url, headers=config.headers, timeout=config.connect_timeout)
        else:
            # a long read timeout: the server may hold a response stream open (the SDK's default)
            http_client = await stack.enter_async_context(httpx2.AsyncClient(
                headers=config.headers, timeout=httpx2.Timeout(config.connect_timeout, read=300.0),
            ))
            inner = streamable_http_client(config.url, http_client=http_client)
        return _watched(inner, lambda: self._connection_lost(lost))

    async def _on_message(self, message: Any) -> None:
        """The session's message handler: ``notifications/tools/list_changed`` (handshake-era
        servers) refreshes the tool list, in a task of its own (the handler must not wait on
        the session it is called from)."""
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._spawn(self._refresh())

    async def _listen(self, client: Client) -> None:
        """``subscriptions/listen`` (2026-07-28 servers): refresh on each tools change."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    await self._refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an optional feature of the server
            logger.info("MCP server '%s': no tools/list_changed subscription: %s", self.name, _describe(exc))

    async def _refresh(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            tools = await _list_tools(client)
        except Exception as exc:  # noqa: BLE001
            logger.warning("MCP server '%s': refreshing the tool list failed: %s", self.name, _describe(exc))
            return
        if client is self._client:
            self.tools = tools
            logger.info("MCP server '%s': tool list changed (%d tools)", self.name, len(tools))
            self._on_tools(self)

    async def _retry_until_connected(self) -> None:
        while not self._closing:
            await asyncio.sleep(max(0.0, self._next_attempt - time.monotonic()))
            async with self._lock:
                if self.state == "connected" or self._closing:
                    return
                try:
                    await self._connect()
                except Exception as exc:
                    self._failed(exc)
                    logger.info("MCP server '%s' still unavailable: %s", self.name, self.error)
                else:
                    logger.info("MCP server '%s' is connected (%d tools)", self.name, len(self.tools or []))
                    return

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
        self._next_attempt = time.monotonic() + delay
        self.state, self.error = "down", _describe(exc)

    def _spawn(self, coroutine: Any) -> None:
        if self._closing:
            coroutine.close()
            return
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def client(self) -> Client | None:
        """The SDK's ``mcp.Client`` of the current session (``None`` while the server is
        down): for calls the skill does not make itself (resources, prompts, a benchmark)."""
        return self._client if self.state == "connected" else None

    @property
    def retry_in(self) -> float | None:
        """Seconds until the next attempt to reach a ``down`` server (``None`` otherwise)."""
        if self.state != "down":
            return None
        return max(0.0, self._next_attempt - time.monotonic())


@contextlib.asynccontextmanager
async def _watched(transport: Any, on_lost: Callable[[], None]) -> AsyncIterator[Any]:
    """``transport``'s streams, calling ``on_lost`` when its read stream ends (a stdio server
    exited, an SSE stream closed): the session then ends instead of failing call after call."""
    async with transport as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[Any](0)

        async def pump() -> None:
            try:
                async with send:
                    async for item in read_stream:
                        await send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            finally:
                on_lost()

        async with anyio.create_task_group() as group:
            group.start_soon(pump)
            try:
                yield receive, write_stream
            finally:
                group.cancel_scope.cancel()


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    leaf = _leaf(exc)
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__
