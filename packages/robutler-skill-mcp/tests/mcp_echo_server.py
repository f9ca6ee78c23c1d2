"""A small MCP server for the tests, on the SDK's own ``MCPServer``: ``python mcp_echo_server.py``
serves it over stdio; :func:`build` gives it to serve over Streamable HTTP or SSE.

Tools: ``echo`` (text back), ``explode`` (raises), ``hang`` (sleeps), ``picture`` (an image and
a resource link), ``measure`` (structured content only), ``grow`` (adds a tool ``added`` and
sends ``notifications/tools/list_changed``), ``pid`` (the server's process id).
"""

import os
import sys

import anyio
import mcp_types
from mcp.server.mcpserver import Context, MCPServer


def stdio_server(only: str | None = None, **options) -> dict:
    """The mcp skill's config of this server over stdio (offering only the ``only`` tools, a
    comma-separated list, when given)."""
    return {"command": sys.executable, "args": [__file__, *([only] if only else [])], **options}


def build(name: str = "echo-server", only: tuple[str, ...] | None = None) -> MCPServer:
    server = MCPServer(name)

    def add(func, **options):
        if only is None or func.__name__ in only:
            server.add_tool(func, **options)

    def echo(text: str) -> str:
        """Say the text back."""
        return f"echo: {text}"

    def explode() -> str:
        """Always fails."""
        raise RuntimeError("kaboom")

    async def hang(seconds: float = 60.0) -> str:
        """Sleep, then answer."""
        await anyio.sleep(seconds)
        return "woke up"

    def picture() -> list:
        """An image and a link."""
        return [
            mcp_types.ImageContent(type="image", data="aGVsbG8=", mime_type="image/png"),
            mcp_types.ResourceLink(type="resource_link", uri="file:///tmp/report.pdf", name="report", mime_type="application/pdf"),
        ]

    def pid() -> str:
        """The server's process id."""
        return str(os.getpid())

    async def grow(ctx: Context) -> str:
        """Add the tool 'added' and say the list changed."""
        server.add_tool(lambda: "I was added", name="added", description="Added at run time.")
        await ctx.notify_tools_changed()  # to subscriptions/listen streams (2026-07-28)
        await ctx.request_context.session.send_tool_list_changed()  # on the session (handshake era)
        return "grown"

    for func in (echo, explode, hang, picture, pid, grow):
        add(func)
    if only is None or "measure" in only:
        server.add_tool(lambda: mcp_types.CallToolResult(content=[], structured_content={"celsius": 21.5}),
                        name="measure", description="Structured content only.")
    return server


if __name__ == "__main__":
    refuse = os.environ.get("MCP_ECHO_REFUSE_IF_EXISTS")  # a start-up failure, on demand
    if refuse and os.path.exists(refuse):
        sys.exit(f"refusing to start: {refuse} exists")
    only = tuple(sys.argv[1].split(",")) if len(sys.argv) > 1 else None
    build(only=only).run("stdio")
