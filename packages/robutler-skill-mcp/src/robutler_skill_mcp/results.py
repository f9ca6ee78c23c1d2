"""An MCP ``CallToolResult`` as the text a model gets (the ``content`` of a ``role: "tool"``
message), and an arguments check against a tool's JSON ``inputSchema`` (``jsonschema``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import mcp_types


def result_text(result: mcp_types.CallToolResult) -> str:
    """The result's text for the model: the text blocks joined with newlines; the structured
    content as JSON when no text block carries it; images and audio described
    (``[image: image/png, 1024 bytes]``), resource links as ``[resource: URI (name, type)]``,
    embedded text resources as their text after ``[resource: URI]``, binary ones described.
    An empty result is ``""``."""
    parts = [_block_text(block) for block in result.content]
    if result.structured_content is not None and not any(
        isinstance(block, mcp_types.TextContent) for block in result.content
    ):
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _block_text(block: Any) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        return f"[{block.type}: {block.mime_type}, {_decoded_size(block.data)} bytes]"
    if isinstance(block, mcp_types.ResourceLink):
        details = ", ".join(str(d) for d in (block.name, block.mime_type) if d)
        return f"[resource: {block.uri}" + (f" ({details})" if details else "") + "]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, mcp_types.TextResourceContents):
            return f"[resource: {resource.uri}]\n{resource.text}"
        mime = f"{resource.mime_type}, " if resource.mime_type else ""
        return f"[resource: {resource.uri}, {mime}{_decoded_size(resource.blob)} bytes]"
    return f"[{getattr(block, 'type', type(block).__name__)} content]"


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except ValueError:
        return len(data)


def schema_validator(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None] | None:
    """A function raising ``ValueError`` (the JSON path and jsonschema's message of the most
    relevant error) when arguments do not match ``schema``, with the validator class the
    schema's ``$schema`` names (Draft 2020-12 by default); ``None`` when ``schema`` itself is
    not a valid JSON Schema (the server's own check then decides)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None
    validator = cls(schema)

    def validate(arguments: dict[str, Any]) -> None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is not None:
            raise ValueError(f"{error.json_path}: {error.message}")

    return validate
