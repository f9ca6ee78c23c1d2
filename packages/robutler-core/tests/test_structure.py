"""The core keeps one home for each job (issue 14: agent.py did four)."""

import inspect
import pathlib

import robutler_core
from robutler_core import agent, http_routes, loop

SOURCE = pathlib.Path(robutler_core.__file__).parent


def _occurrences(needle: str) -> list[str]:
    return [
        f"{path.relative_to(SOURCE)}:{number}"
        for path in sorted(SOURCE.rglob("*.py"))
        if "testing" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if needle in line
    ]


def test_one_await_if_awaitable_helper_and_one_completion_id_builder():
    assert _occurrences("isawaitable(") == ["tools.py:" + _occurrences("isawaitable(")[0].split(":")[1]]
    assert len(_occurrences('"chatcmpl-')) == 1 and _occurrences('"chatcmpl-')[0].startswith("wire.py")


def test_streaming_lives_beside_the_tool_loop_and_http_in_its_own_module():
    assert agent.HttpRoute is http_routes.HttpRoute  # still importable from robutler_core.agent
    assert "create_task" not in inspect.getsource(agent)
    assert "create_task" in inspect.getsource(loop.ToolLoop.stream)
    assert "class HttpRoute" not in inspect.getsource(agent)
