"""The ``mcp`` skill: the tools of MCP servers (stdio, Streamable HTTP, SSE) as server-side
tools of the agent."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from robutler_core import Skill, Tool
from robutler_core.errors import ConfigurationError
from robutler_core.scopes import scope_admits

from .config import MCPConfig

if TYPE_CHECKING:
    import mcp_types

    from robutler_core import Agent

    from .connection import ServerConnection

logger = logging.getLogger("robutler_skill_mcp")


class MCPToolError(Exception):
    """An MCP tool answered with ``isError: true``; the message is its result text."""


class MCPSkill(Skill):
    """MCP servers' tools as the agent's server-side tools.

    Config (see :class:`~robutler_skill_mcp.config.MCPConfig`)::

        {"servers": {"time": {"command": "mcp-server-time"},
                     "docs": {"url": "http://127.0.0.1:8000/mcp", "prefix": "docs_"}}}

    Each server's session opens in :meth:`initialize` (server start-up) and is shared by every
    request; :meth:`close` ends them. Each tool keeps the server's name (after ``prefix``),
    description and ``inputSchema``; arguments are checked against the schema (jsonschema)
    before the call. The result text (:func:`~robutler_skill_mcp.results.result_text`) goes
    back to the model; an ``isError`` result, a refused call, a timeout or an unreachable
    server go back as the tool's error result, never ending the request.

    Raises:
        ConfigurationError: bad config (at construction); at start-up, two servers offering
            one tool name without prefixes (naming both servers and the tool).
    """

    config_model = MCPConfig

    def __init__(self, config: dict[str, Any] | None = None, scope: Any = "all", dependencies: list[str] | None = None) -> None:
        super().__init__(config, scope=scope, dependencies=dependencies)
        self.settings = MCPConfig.model_validate(self.config)
        self.connections: dict[str, ServerConnection] = {}
        self._registered: dict[str, tuple[str, str]] = {}  # wire name -> (server, definition)
        self._lock = threading.Lock()
        self._started = False

    async def initialize(self, agent: Agent) -> None:
        """Connect to every server concurrently (each within its ``connect_timeout``). A
        server that cannot be reached is logged and retried in the background; the others'
        tools are registered. Raises ConfigurationError for a tool-name clash."""
        await asyncio.to_thread(_import_sdk)
        from .connection import ServerConnection

        self.connections = {
            name: ServerConnection(name, server, self._tools_changed)
            for name, server in self.settings.servers.items()
        }
        await asyncio.gather(*(c.start() for c in self.connections.values()))
        try:
            self._check_clashes()
        except ConfigurationError:
            await self.close()
            raise
        self._started = True
        for connection in self.connections.values():
            self._sync_tools(connection)

    async def close(self) -> None:
        """Close every session (stdio servers stop) and remove the MCP tools."""
        self._started = False
        await asyncio.gather(*(c.close() for c in self.connections.values()), return_exceptions=True)
        with self._lock:
            for wire in list(self._registered):
                self._unregister(wire)

    def status(self, auth_scope: str) -> dict[str, Any]:
        """``{"servers": {name: {"transport", "state", "tools"}}}``: ``state`` is
        ``connected``, ``down``, ``starting`` or ``closed``; a ``down`` server also has
        ``retry_in`` (seconds) and, for a caller whose scope admits ``owner``, ``error``."""
        servers: dict[str, Any] = {}
        for name, connection in self.connections.items():
            entry: dict[str, Any] = {
                "transport": connection.config.kind,
                "state": connection.state,
                "tools": len(connection.tools or []),
            }
            if connection.state == "down":
                entry["retry_in"] = round(connection.retry_in or 0.0, 1)
                if scope_admits(frozenset({"owner"}), auth_scope):
                    entry["error"] = connection.error
            servers[name] = entry
        return {"servers": servers}

    # -- tools -------------------------------------------------------------------------------
    def _wire_name(self, connection: ServerConnection, tool: mcp_types.Tool) -> str:
        return connection.config.prefix + tool.name

    def _check_clashes(self) -> None:
        offered: dict[str, str] = {}
        for name, connection in self.connections.items():
            for tool in connection.tools or []:
                wire = self._wire_name(connection, tool)
                if wire in offered:
                    raise ConfigurationError(
                        f"MCP servers '{offered[wire]}' and '{name}' both offer a tool named "
                        f"'{wire}': give one of them a 'prefix'"
                    )
                offered[wire] = name

    def _tools_changed(self, connection: ServerConnection) -> None:
        if self._started:
            self._sync_tools(connection)

    def _sync_tools(self, connection: ServerConnection) -> None:
        """Make the agent's tools from ``connection`` match its current list: removed and
        changed ones unregistered, new and changed ones registered. A name another source
        already uses is logged and left out."""
        wanted = {
            self._wire_name(connection, tool): tool for tool in connection.tools or []
        }
        with self._lock:
            for wire, (server, _) in list(self._registered.items()):
                if server == connection.name and (
                    wire not in wanted or self._registered[wire][1] != _definition(wanted[wire])
                ):
                    self._unregister(wire)
            for wire, tool in wanted.items():
                if wire in self._registered:
                    continue
                try:
                    self.register_tool(self._make_tool(connection, tool, wire))
                except ConfigurationError as exc:
                    logger.error("MCP server '%s': tool '%s' left out: %s", connection.name, wire, exc.message)
                    continue
                self._registered[wire] = (connection.name, _definition(tool))

    def _unregister(self, wire: str) -> None:
        del self._registered[wire]
        try:
            self.unregister_tool(wire)
        except (ConfigurationError, RuntimeError):  # already gone with its agent
            pass

    def _make_tool(self, connection: ServerConnection, tool: mcp_types.Tool, wire: str) -> Tool:
        from .results import result_text, schema_validator

        mcp_name = tool.name

        async def call(arguments: dict[str, Any]) -> str:
            result = await connection.call_tool(mcp_name, arguments)
            text = result_text(result)
            if result.is_error:
                raise MCPToolError(text or "the tool reported an error")
            return text

        schema = dict(tool.input_schema)
        return Tool(
            call, name=wire, description=tool.description or tool.title or wire,
            parameters=schema, validate=schema_validator(schema), scope=connection.config.scope,
        )


def _definition(tool: mcp_types.Tool) -> str:
    return json.dumps([tool.description, tool.title, tool.input_schema], sort_keys=True, default=str)


def _import_sdk() -> None:
    """Import the MCP SDK and jsonschema (run in a worker thread at start-up)."""
    from . import connection, results  # noqa: F401
