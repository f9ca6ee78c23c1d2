"""Run one request against an agent in tests, streamed or not, and get a ``chat.completion``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..wire import ChunkAssembler

if TYPE_CHECKING:
    from ..agent import Agent


async def run_request(
    agent: Agent,
    messages: str | list[dict[str, Any]],
    *,
    stream: bool = False,
    tools: list[dict[str, Any]] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """One request; returns the ``chat.completion``.

    ``messages`` may be a string (one user message). With ``stream=True`` the request goes
    through :meth:`Agent.run_streaming`, the completion is assembled from the chunks, and the
    chunks are kept on ``completion["chunks"]``. ``params`` are passed on (``context=``,
    ``temperature=``, ``stream_options=``...).
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not stream:
        return await agent.run(messages, tools, **params)
    assembler = ChunkAssembler()
    chunks = []
    async for chunk in agent.run_streaming(messages, tools, **params):
        chunks.append(chunk)
        assembler.add(chunk)
    completion = assembler.completion(model=agent.name)
    completion["chunks"] = chunks
    return completion
