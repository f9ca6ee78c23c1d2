"""Example values generated from a JSON schema (the subset pydantic and OpenAI tools use).

The schemas may come from a request (a client's tools), so generation is bounded: strings are
at most :data:`MAX_STRING_LENGTH` characters, arrays at most :data:`MAX_ARRAY_ITEMS` items,
nesting at most :data:`MAX_DEPTH` levels, and once about :data:`MAX_SIZE` characters have been
generated, arrays get no more items and strings are empty. A schema that asks for more
(``minLength: 1000000000``, ``minItems``, a ``$ref`` to itself) gets a small value that may not
satisfy it; the tool's argument validation then answers the model, as it would for a real one.
"""

from __future__ import annotations

import math
from typing import Any

MAX_STRING_LENGTH = 64
"""Longest generated string, whatever ``minLength`` asks."""
MAX_ARRAY_ITEMS = 8
"""Most items of a generated array, whatever ``minItems`` asks."""
MAX_DEPTH = 8
"""Deepest nesting of generated arrays and objects (``$ref`` cycles end here)."""
MAX_SIZE = 4096
"""Approximate budget, in characters, of one generated value."""

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


def example_value(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A small value for ``schema``, valid for it within the caps above.

    In order: its ``default``, ``const``, first ``enum`` value or first ``examples`` value when
    there is one; else the first non-null ``anyOf``/``oneOf``/``allOf`` option; else a fixed value
    per type: ``"a"`` repeated to ``minLength`` (a fixed value for a known ``format``), ``1`` or
    ``1.5`` moved into ``minimum``/``maximum``, ``True``, ``None``, ``minItems`` items (at least
    one), objects with their required properties. Resolves local ``$ref``s to ``#/$defs/...``
    (and ``#/definitions/...``); an unresolvable one gives ``None``. Never raises for a
    malformed schema: whatever it cannot read, it leaves out.
    """
    if defs is None:
        defs = {}
        if isinstance(schema, dict):
            for key in ("$defs", "definitions"):
                if isinstance(schema.get(key), dict):
                    defs.update(schema[key])
    return _Generator(defs).value(schema, 0)


class _Generator:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.remaining = MAX_SIZE

    def value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return None
        if isinstance(schema.get("$ref"), str):
            return self.value(self.defs.get(schema["$ref"].rsplit("/", 1)[-1]), depth + 1)
        for key in ("default", "const"):
            if key in schema:
                return self._spend(schema[key])
        for key in ("enum", "examples"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self._spend(schema[key][0])
        for key in ("anyOf", "oneOf", "allOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
                return self.value((real or options)[0], depth + 1)
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "string":
            return self._string(schema)
        if kind == "integer":
            return int(_in_range(schema, 1, step=1))
        if kind == "number":
            return float(_in_range(schema, 1.5, step=0))
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        if kind == "array":
            return self._array(schema, depth)
        return self._object(schema, depth)

    def _spend(self, value: Any) -> Any:
        self.remaining -= len(str(value)) if isinstance(value, (str, list, dict)) else 1
        return value

    def _string(self, schema: dict[str, Any]) -> str:
        if schema.get("format") in _FORMATS:
            return self._spend(_FORMATS[schema["format"]])
        length = max(1, _number(schema.get("minLength"), 1))
        maximum = _number(schema.get("maxLength"), length)
        length = max(0, min(length, maximum, MAX_STRING_LENGTH, self.remaining))
        return self._spend("a" * int(length))

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        items = schema.get("items")
        if not isinstance(items, dict):
            items = {"type": "string"}
        count = max(1, _number(schema.get("minItems"), 1))
        count = min(count, _number(schema.get("maxItems"), count), MAX_ARRAY_ITEMS)
        values: list[Any] = []
        while len(values) < count and self.remaining > 0:
            values.append(self.value(items, depth + 1))
            self.remaining -= 1
        return values

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(properties)
        result: dict[str, Any] = {}
        for name in names:
            if isinstance(name, str) and name in properties and self.remaining > 0:
                self.remaining -= len(name) + 1
                result[name] = self.value(properties[name], depth + 1)
        return result


def _number(value: Any, fallback: int | float) -> int | float:
    """``value`` when it is a number (not a bool), else ``fallback``."""
    if isinstance(value, bool):
        return fallback
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return fallback


def _in_range(schema: dict[str, Any], preferred: float, step: float) -> float:
    """``preferred`` moved into the schema's bounds (exclusive bounds moved by ``step``)."""
    value = preferred
    low = _number(schema.get("minimum"), float("-inf"))
    exclusive_low = _number(schema.get("exclusiveMinimum"), float("-inf"))
    high = _number(schema.get("maximum"), float("inf"))
    exclusive_high = _number(schema.get("exclusiveMaximum"), float("inf"))
    if value < low:
        value = low
    if value <= exclusive_low:
        value = exclusive_low + (step or 0.5)
    if value > high:
        value = high
    if value >= exclusive_high:
        value = exclusive_high - (step or 0.5)
    return value
