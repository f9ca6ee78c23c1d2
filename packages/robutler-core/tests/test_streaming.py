"""The streaming side of the tool loop: producer task, consumer, on_chunk on every chunk."""

import asyncio

import pytest

from robutler_core import Agent, Skill, hook, tool
from robutler_core.testing import ScriptedModel, finish_chunks, text_chunks, tool_call_chunks

USER = [{"role": "user", "content": "hello"}]


class Abort(BaseException):
    """A BaseException that is not Exception (like KeyboardInterrupt, without stopping pytest)."""


async def _drain(agent):
    return [chunk async for chunk in agent.run_streaming(USER)]


async def test_a_base_exception_in_the_producer_ends_the_stream():
    agent = Agent("a", model=ScriptedModel([Abort()]))
    with pytest.raises(Abort):
        await asyncio.wait_for(_drain(agent), timeout=2)


async def test_a_cancellation_inside_the_request_ends_the_stream():
    class Cancels(Skill):
        @tool
        async def stop(self) -> str:
            raise asyncio.CancelledError  # e.g. an inner task the tool awaited was cancelled

    model = ScriptedModel([tool_call_chunks([("stop", {})]) + finish_chunks("tool_calls"), text_chunks("never")])
    agent = Agent("a", model=model, skills={"c": Cancels()})
    consumer = asyncio.ensure_future(_drain(agent))
    done, _ = await asyncio.wait({consumer}, timeout=2)
    assert done, "the consumer waited forever"
    assert consumer.cancelled() or isinstance(consumer.exception(), asyncio.CancelledError)


async def test_on_chunk_hooks_see_every_chunk_the_usage_chunk_included():
    seen = []

    class Meter(Skill):
        @hook("on_chunk")
        def count(self, chunk):
            seen.append(chunk)
            if not chunk["choices"]:
                return {**chunk, "usage": {**chunk["usage"], "metered": True}}

    agent = Agent("a", model=ScriptedModel([text_chunks("hi")]), skills={"m": Meter()})
    sent = [c async for c in agent.run_streaming(USER, stream_options={"include_usage": True})]
    assert len(seen) == len(sent) and seen[-1]["choices"] == [] and "usage" in seen[-1]
    assert sent[-1]["usage"]["metered"] is True
