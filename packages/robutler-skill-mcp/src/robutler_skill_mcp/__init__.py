"""Robutler MCP skill, registered through the ``robutler`` entry point as any third-party
package would: the ``mcp`` skill (:class:`MCPSkill`) gives an agent the tools of MCP servers
(stdio, Streamable HTTP, SSE), and ``register_routes`` serves every agent of ``robutler serve``
as an MCP server at ``/{agent}/mcp`` (Streamable HTTP). Importing this module does not import
the MCP SDK: the skill imports it at start-up, the routes at their first request."""

from typing import Any

from robutler_core import hookimpl

from .config import MCPConfig, ServerConfig
from .skill import MCPSkill, MCPToolError

__all__ = ["MCPConfig", "MCPSkill", "MCPToolError", "ServerConfig"]


@hookimpl
def register_skills(register):  # type: ignore[no-untyped-def]
    register(MCPSkill, name="mcp")


@hookimpl
def register_routes(app: Any, agents: Any) -> Any:
    """Serve each agent at ``/{agent}/mcp`` (see :mod:`robutler_skill_mcp.routes`: the SDK is
    imported at the first request)."""
    from .routes import mount_agents

    return mount_agents(app, agents)
