"""Tool timeouts (``@tool(timeout=...)``, the agent's ``tool_timeout``), the request deadline
(``request_timeout``) and the executor that runs synchronous tools (``tool_executor``)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from robutler_core import Agent, get_context, tool
from robutler_core.errors import ConfigurationError, UpstreamTimeoutError


def tool_results(completion: dict) -> str:
    return completion["choices"][0]["message"]["content"]


async def test_async_tool_past_its_timeout_is_cancelled_and_the_model_gets_an_error():
    cancelled = asyncio.Event()

    @tool(timeout=0.2)
    async def slow() -> str:
        """Takes long."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    @tool
    async def quick() -> str:
        """Answers at once."""
        return "quick answer"

    agent = Agent("a", model="test", tools=[slow, quick])
    started = time.monotonic()
    completion = await agent.run([{"role": "user", "content": "go"}])
    assert time.monotonic() - started < 5
    answer = tool_results(completion)
    assert "Error: tool 'slow' timed out after 0.2 s" in answer
    assert "quick answer" in answer
    assert cancelled.is_set()


async def test_the_agents_tool_timeout_applies_to_a_hung_sync_tool():
    release = threading.Event()

    def hung() -> str:
        """Blocks until released."""
        release.wait(30)
        return "released"

    agent = Agent("a", model="test", tools=[hung], tool_timeout=0.3)
    try:
        started = time.monotonic()
        completion = await agent.run([{"role": "user", "content": "go"}])
        assert time.monotonic() - started < 5
        assert "Error: tool 'hung' timed out after 0.3 s" in tool_results(completion)
    finally:
        release.set()


async def test_a_timeout_error_raised_by_the_tool_itself_is_a_failure_not_a_timeout():
    @tool(timeout=10)
    async def flaky() -> str:
        """Fails with its own TimeoutError."""
        raise TimeoutError("the upstream socket timed out")

    completion = await Agent("a", model="test", tools=[flaky]).run([{"role": "user", "content": "go"}])
    assert "Error: tool 'flaky' failed: TimeoutError: the upstream socket timed out" in tool_results(completion)


async def test_sync_tools_run_on_the_agents_executor_with_the_request_context():
    seen: list[tuple[str, str]] = []

    def where() -> str:
        """Says where it ran."""
        seen.append((threading.current_thread().name, get_context().agent.name))
        return "ok"

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tools-of-test") as pool:
        agent = Agent("a", model="test", tools=[where], tool_executor=pool)
        await agent.run([{"role": "user", "content": "go"}])
    assert len(seen) == 1
    assert seen[0][0].startswith("tools-of-test")
    assert seen[0][1] == "a"


async def test_without_an_executor_sync_tools_use_the_default_one():
    names: list[str] = []

    def where() -> str:
        """Says where it ran."""
        names.append(threading.current_thread().name)
        return "ok"

    await Agent("a", model="test", tools=[where]).run([{"role": "user", "content": "go"}])
    assert names and not names[0].startswith("tools-of-test")
    assert names[0] != threading.main_thread().name


async def test_a_request_past_its_deadline_ends_with_504_and_finalize_runs_once():
    finalized: list[str] = []

    @tool(timeout=30)
    async def slow() -> str:
        """Takes long."""
        await asyncio.sleep(30)
        return "never"

    agent = Agent(
        "a", model="test", tools=[slow], request_timeout=0.3,
        hooks={"finalize_connection": [lambda context: finalized.append(context.request_id)]},
    )
    with pytest.raises(UpstreamTimeoutError) as raised:
        await agent.run([{"role": "user", "content": "go"}])
    assert raised.value.status_code == 504
    assert raised.value.code == "request_timeout"
    assert "request_timeout of 0.3 s" in raised.value.message
    assert len(finalized) == 1

    chunks = []
    with pytest.raises(UpstreamTimeoutError):
        async for chunk in agent.run_streaming([{"role": "user", "content": "go"}]):
            chunks.append(chunk)
    assert len(finalized) == 2


async def test_concurrent_requests_each_get_their_own_deadline_and_fast_ones_none():
    """The agent's requests share one timer handle: each still ends at its own deadline,
    whatever requests came and went before and between them."""

    delay = {"seconds": 0.0}

    @tool(timeout=30)
    async def slow() -> str:
        """Takes long (once told to)."""
        await asyncio.sleep(delay["seconds"])
        return "done"

    fast_agent = Agent("fast", model="test", request_timeout=0.2)
    agent = Agent("a", model="test", tools=[slow], request_timeout=0.2)
    loop = asyncio.get_running_loop()
    for _ in range(5):  # requests that armed the agent's deadline timer and ended
        await agent.run([{"role": "user", "content": "hi"}])
    delay["seconds"] = 30

    async def timed_out_after() -> float:
        start = loop.time()
        with pytest.raises(UpstreamTimeoutError):
            await agent.run([{"role": "user", "content": "go"}])
        return loop.time() - start

    first = asyncio.create_task(timed_out_after())
    await asyncio.sleep(0.1)
    second = asyncio.create_task(timed_out_after())
    for _ in range(20):  # fast requests finish between them
        await fast_agent.run([{"role": "user", "content": "hi"}])
    elapsed = await asyncio.gather(first, second)
    assert all(0.195 <= e < 0.35 for e in elapsed), elapsed
    await asyncio.sleep(0.25)  # past any deadline the fast requests had: they answered
    assert (await fast_agent.run([{"role": "user", "content": "hi"}]))["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_bad_timeouts_are_refused(bad):
    with pytest.raises(TypeError, match="positive number of seconds"):
        tool(timeout=bad)
    with pytest.raises(ConfigurationError, match="tool_timeout must be a positive number"):
        Agent("a", model="test", tool_timeout=bad)
    with pytest.raises(ConfigurationError, match="request_timeout must be a positive number"):
        Agent("a", model="test", request_timeout=bad)
