"""Every agent of ``robutler serve`` as an MCP server at ``/{agent}/mcp`` (Streamable HTTP);
the routes are mounted by :mod:`robutler_skill_mcp.routes`, which imports this module (and the
SDK) at the first request.

The server offers the agent's server-side tools that the caller's scope admits, each with its
JSON schema, and a ``chat`` tool (``message: str``) that runs the agent and returns its answer.
Each MCP request runs the agent's request lifecycle on the HTTP request's headers: the
``on_connection`` hooks (authentication: a token that makes a caller ``owner`` over chat
completions does so here), the agent's scope, ``before_toolcall``/``after_toolcall``, the
tool's scope when it runs, usage records and ``finalize_connection`` once
(:meth:`robutler_core.Agent.call_tool`, :meth:`robutler_core.Agent.describe`,
:meth:`robutler_core.Agent.run`). The SDK's session manager runs stateless, so several
workers can serve one agent.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

import mcp_types
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from robutler_core.errors import RobutlerError

if TYPE_CHECKING:
    from robutler_core import Agent, Context

CHAT_TOOL = "chat"
_CHAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "What to ask the agent."}},
    "required": ["message"],
    "additionalProperties": False,
}
_headers: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("robutler_mcp_headers", default={})


def session_manager(agent: Agent) -> StreamableHTTPSessionManager:
    """A stateless session manager serving :func:`agent_server` for ``agent``; run it with its
    ``run()`` (once) while it handles requests (:func:`handle_request`)."""
    return StreamableHTTPSessionManager(app=agent_server(agent), stateless=True)


async def handle_request(manager: StreamableHTTPSessionManager, scope: Any, receive: Any, send: Any) -> None:
    """One HTTP request to ``manager``, with its headers in a context variable (the SDK runs the
    handlers in tasks that inherit it), so the agent's hooks see them."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    token = _headers.set(headers)
    try:
        await manager.handle_request(scope, receive, send)
    finally:
        _headers.reset(token)


def agent_server(agent: Agent) -> Server[Any]:
    """The SDK's low-level MCP server for ``agent``: ``tools/list`` and ``tools/call``."""

    async def list_tools(ctx: Any, params: Any) -> mcp_types.ListToolsResult:
        info = await _guarded(agent.describe(_context(agent)))
        tools = [
            mcp_types.Tool(
                name=t["function"]["name"], description=t["function"].get("description"),
                input_schema=t["function"].get("parameters") or {"type": "object"},
            )
            for t in info["tools"]
        ]
        if not any(tool.name == CHAT_TOOL for tool in tools):
            tools.append(mcp_types.Tool(
                name=CHAT_TOOL, description=f"Ask the agent '{agent.name}' and get its answer.",
                input_schema=_CHAT_SCHEMA,
            ))
        return mcp_types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        arguments = params.arguments or {}
        if params.name == CHAT_TOOL and not any(t.name == CHAT_TOOL for t in agent.tools_for_scope("admin")):
            return await _chat(agent, arguments)
        result = await _guarded(agent.call_tool(params.name, arguments, _context(agent)))
        return _text_result(result.content, result.is_error)

    def input_schema(name: str) -> dict[str, Any] | None:
        """A tool's schema for the SDK's ``Mcp-Param-*`` header check (any caller's view:
        the scope is enforced when the tool runs)."""
        for item in agent.tools_for_scope("admin"):
            if item.name == name:
                return item.parameters
        return _CHAT_SCHEMA if name == CHAT_TOOL else None

    return Server(
        agent.name, on_list_tools=list_tools, on_call_tool=call_tool, get_tool_input_schema=input_schema,
    )


async def _chat(agent: Agent, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
    message = arguments.get("message")
    if not isinstance(message, str) or set(arguments) - {"message"}:
        return _text_result("Error: chat takes one argument, 'message', a string", True)
    context = _context(agent, [{"role": "user", "content": message}])
    try:
        completion = await agent.run(context.messages, context=context)
    except RobutlerError as exc:
        if exc.status_code in (401, 402, 403):
            raise _mcp_error(exc) from None
        return _text_result(f"Error: {exc.message}", True)
    return _text_result(completion["choices"][0]["message"].get("content") or "", False)


def _context(agent: Agent, messages: list[dict[str, Any]] | None = None) -> Context:
    return agent.new_context(messages or [], None, False, headers=_headers.get())


async def _guarded(awaitable: Any) -> Any:
    """``awaitable``'s value; a Robutler error (401, 403...) becomes a JSON-RPC error."""
    try:
        return await awaitable
    except RobutlerError as exc:
        raise _mcp_error(exc) from None


def _mcp_error(exc: RobutlerError) -> MCPError:
    code = mcp_types.INVALID_REQUEST if exc.status_code < 500 else mcp_types.INTERNAL_ERROR
    return MCPError(code=code, message=f"{exc.status_code} {exc.message}", data={"status": exc.status_code, "type": exc.type})


def _text_result(text: str, is_error: bool) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)], is_error=is_error)
