"""The ``mcp`` skill's configuration: ``{"servers": {NAME: ServerConfig}}``."""

from __future__ import annotations

from typing import Literal

import pydantic

SERVER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ServerConfig(pydantic.BaseModel):
    """One MCP server: a ``command`` the skill starts (stdio) or a ``url`` it connects to.

    Times are seconds. Unknown options are refused.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    command: str | None = None
    """stdio: the executable to run (looked up on ``PATH``)."""
    args: list[str] = []
    """stdio: its arguments."""
    env: dict[str, str] | None = None
    """stdio: environment variables, added to the SDK's safe defaults (``HOME``, ``PATH``...)."""
    cwd: str | None = None
    """stdio: the working directory."""
    url: str | None = None
    """Streamable HTTP or SSE: the endpoint (``http://host:port/mcp``, ``.../sse``)."""
    transport: Literal["streamable-http", "sse"] = "streamable-http"
    """With ``url``: ``streamable-http`` (the default) or ``sse`` (the 2024-11-05 transport)."""
    headers: dict[str, str] | None = None
    """With ``url``: HTTP headers sent with every request (``Authorization``...)."""
    timeout: float = pydantic.Field(30.0, gt=0)
    """Seconds a tool call may take before it is cancelled and answered with an error."""
    connect_timeout: float = pydantic.Field(10.0, gt=0)
    """Seconds to start or reach the server and list its tools."""
    prefix: str = ""
    """Prepended to the server's tool names (``"git_"`` makes ``git_status``)."""
    scope: str | list[str] = "all"
    """Who may run this server's tools: ``all``, ``owner``, ``admin`` or custom scopes."""

    @pydantic.model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either 'command' (stdio) or 'url' (Streamable HTTP or SSE)")
        given = self.model_fields_set
        if self.command is not None:
            wrong = sorted(given & {"transport", "headers"})
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: only with 'url', not with 'command'")
        else:
            wrong = sorted(given & {"args", "env", "cwd"})
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: only with 'command', not with 'url'")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self

    @property
    def kind(self) -> str:
        """``stdio``, ``streamable-http`` or ``sse``."""
        return "stdio" if self.command is not None else self.transport


class MCPConfig(pydantic.BaseModel):
    """The ``mcp`` skill's options."""

    model_config = pydantic.ConfigDict(extra="forbid")

    servers: dict[pydantic.constr(pattern=SERVER_NAME_PATTERN), ServerConfig] = {}  # type: ignore[valid-type]
    """MCP servers by name (letters, digits, ``.``, ``_``, ``-``)."""
