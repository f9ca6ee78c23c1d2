"""The test model's arguments: valid for ordinary schemas, small and quick for hostile ones."""

import json
import time

import pytest

from robutler_core import Agent
from robutler_core.testing import TestModel, example_value
from robutler_core.testing.schema_values import MAX_ARRAY_ITEMS, MAX_SIZE, MAX_STRING_LENGTH


@pytest.mark.parametrize(("schema", "value"), [
    ({"type": "string"}, "a"),
    ({"type": "string", "minLength": 3}, "aaa"),
    ({"type": "string", "maxLength": 0}, ""),
    ({"type": "integer"}, 1),
    ({"type": "integer", "minimum": 5}, 5),
    ({"type": "integer", "maximum": 0}, 0),
    ({"type": "integer", "exclusiveMinimum": 7}, 8),
    ({"type": "number", "maximum": 1}, 1.0),
    ({"type": "boolean"}, True),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 3}, [1, 1, 1]),
    ({"type": "string", "examples": ["Paris", "Oslo"]}, "Paris"),
    ({"type": "string", "enum": ["x", "y"], "examples": ["y"]}, "x"),
    ({"type": "string", "default": "d", "examples": ["e"]}, "d"),
    ({"type": "string", "format": "date"}, "2024-01-01"),
    ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, 1),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]},
     {"a": "a"}),
    ({"$defs": {"P": {"type": "integer"}}, "type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}},
     {"p": 1}),
])
def test_ordinary_schemas_get_a_valid_value(schema, value):
    assert example_value(schema) == value


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"s": {"type": "string", "minLength": 10**9}}, "required": ["s"]},
    {"type": "object", "properties": {"l": {"type": "array", "minItems": 10**9}}, "required": ["l"]},
    # Nested arrays: 10**9 ** 5 items if nothing bounds the total.
    {"type": "array", "minItems": 10**9, "items": {"type": "array", "minItems": 10**9, "items": {
        "type": "array", "minItems": 10**9, "items": {"type": "array", "minItems": 10**9, "items": {
            "type": "string", "minLength": 10**9}}}}},
    # A schema that refers to itself.
    {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}, "required": ["next"]}},
     "$ref": "#/$defs/N"},
    # Many wide properties.
    {"type": "object", "properties": {f"p{i}": {"type": "string", "minLength": 10**6} for i in range(500)}},
])
def test_hostile_schemas_give_a_small_value_quickly(schema):
    started = time.perf_counter()
    value = example_value(schema)
    assert time.perf_counter() - started < 1.0
    assert len(json.dumps(value)) <= 2 * MAX_SIZE


def test_caps_are_small():
    assert example_value({"type": "string", "minLength": 10**9}) == "a" * MAX_STRING_LENGTH
    assert len(example_value({"type": "array", "minItems": 10**9})) == MAX_ARRAY_ITEMS


@pytest.mark.parametrize("schema", [
    {"$ref": "#/$defs/Missing"}, {"type": "array", "items": True}, {"type": "object", "properties": {"x": False}},
    {"type": "integer", "minimum": "ten"}, {"type": "string", "minLength": -5}, {"anyOf": []},
    {"type": "number", "minimum": float("inf")}, {"type": "integer", "maximum": 10**400},
])
def test_odd_schemas_do_not_raise(schema):
    json.dumps(example_value(schema))


async def test_a_request_tool_asking_for_a_billion_items_gets_a_small_call():
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"xs": {"type": "array", "minItems": 10**9,
                                                  "items": {"type": "string", "minLength": 10**9}}},
        "required": ["xs"]}}}
    started = time.perf_counter()
    completion = await Agent("a", model=TestModel()).run([{"role": "user", "content": "hi"}], tools=[tool])
    assert time.perf_counter() - started < 2.0
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert len(call["function"]["arguments"]) <= 2 * MAX_SIZE
