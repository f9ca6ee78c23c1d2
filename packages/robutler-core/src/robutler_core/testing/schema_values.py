"""Example values generated from a JSON schema (the subset pydantic and OpenAI tools use)."""

from __future__ import annotations

from typing import Any


def example_value(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A value valid for ``schema``: its default or first enum/const value when there is one,
    else a fixed value per type (``"a"``, ``1``, ``1.5``, ``True``, one-item arrays, objects with
    their required properties). Resolves local ``$ref``s to ``#/$defs/...``.
    """
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return example_value(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example_value(options[0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        return "a" * max(1, int(schema.get("minLength", 1)))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        return [example_value(items, defs) for _ in range(max(1, int(schema.get("minItems", 1))))]
    properties = schema.get("properties") or {}
    required = schema.get("required", list(properties))
    return {name: example_value(properties[name], defs) for name in required if name in properties}
