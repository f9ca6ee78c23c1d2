import asyncio
import enum
from typing import Literal, Optional

import pydantic
import pytest

from robutler_core import Context, Tool, tool
from robutler_core.tools import ToolArgumentsError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    number: int = 1


def search(query: str, limit: int = 5, tags: list[str] | None = None, mode: Literal["fast", "deep"] = "fast",
           color: Color = Color.RED, address: Optional[Address] = None, context: Context = None) -> str:
    """Search the catalogue.

    Longer text about searching.

    Args:
        query: What to look for.
        limit: Most results to return.
    """
    return f"{query}:{limit}:{tags}:{mode}:{color.value}:{address}:{context is not None}"


def test_schema_from_hints_and_docstring():
    t = Tool.from_function(search)
    assert t.name == "search"
    assert t.description == "Search the catalogue.\n\nLonger text about searching."
    props = t.parameters["properties"]
    assert set(props) == {"query", "limit", "tags", "mode", "color", "address"}  # no context
    assert t.parameters["required"] == ["query"]
    assert props["query"] == {"type": "string", "description": "What to look for."}
    assert props["limit"]["default"] == 5 and props["limit"]["description"] == "Most results to return."
    assert props["tags"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}
    assert props["mode"]["enum"] == ["fast", "deep"]
    assert t.parameters["$defs"]["Color"]["enum"] == ["red", "blue"]
    assert "Address" in t.parameters["$defs"]
    assert t.parameters["additionalProperties"] is False


async def test_invoke_validates_and_injects_context():
    t = Tool.from_function(search)
    ctx = object()
    out = await t.invoke('{"query": "x", "address": {"street": "Main"}, "color": "blue"}', ctx)
    assert out == "x:5:None:fast:blue:street='Main' number=1:True"


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        ("{not json", "are not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ("{}", "query: Field required"),
        ('{"query": "x", "limit": "many"}', "limit: Input should be a valid integer"),
        ('{"query": "x", "mode": "slow"}', "mode: Input should be 'fast' or 'deep'"),
        ('{"query": "x", "surprise": 1}', "surprise: Extra inputs are not permitted"),
    ],
)
async def test_invalid_arguments_name_the_field(arguments, fragment):
    with pytest.raises(ToolArgumentsError, match="search") as info:
        await Tool.from_function(search).invoke(arguments)
    assert fragment in str(info.value)


async def test_decorator_options_and_async_and_sync_tools():
    @tool(name="add_numbers", description="Adds.", scope="owner")
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    @tool
    def shout(text: str) -> str:
        return text.upper()

    t = Tool.from_function(add)
    assert (t.name, t.description, t.scope) == ("add_numbers", "Adds.", frozenset({"owner"}))
    assert await t.invoke({"a": 2, "b": 3}) == 5
    assert await Tool.from_function(shout).invoke({"text": "hi"}) == "HI"
    assert add.__name__ == "add"  # still the plain function


def test_bad_scope_fails_at_decoration():
    with pytest.raises(ValueError, match="scope"):
        tool(scope=[])


async def test_sync_tools_run_in_a_worker_thread_with_the_context():
    import threading

    from robutler_core import Agent, Skill, get_context

    seen = {}

    class Probe(Skill):
        @tool
        def probe(self) -> str:
            seen["thread"] = threading.current_thread() is not threading.main_thread()
            seen["context"] = get_context() is not None
            return "ok"

    await Agent("a", model="test", skills={"p": Probe()}).run([{"role": "user", "content": "x"}])
    assert seen == {"thread": True, "context": True}
