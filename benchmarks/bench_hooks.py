"""What lifecycle hooks cost on the hot path: streamed chunks per second of one agent run
with no hooks, against the same run with ``--hooks`` ``on_chunk`` hooks (half sync, half
async, at different priorities), side by side in alternating rounds.

The model is a ScriptedModel replaying ``--chunks`` content chunks, so the figure is the
agent's own per-chunk work (dispatch, chunk building, the queue to the consumer), not a
provider's.

    python benchmarks/bench_hooks.py [--chunks 2000] [--hooks 6] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from robutler_core import Agent
from robutler_core.testing import ScriptedModel, text_chunks

USER = [{"role": "user", "content": "stream please"}]


async def chunks_per_second(hooks: int, chunks: int) -> float:
    text = "x" * chunks
    model = ScriptedModel([text_chunks(text, pieces=chunks)])
    agent = Agent("bench", model=model)
    for i in range(hooks):
        if i % 2:
            async def hook(context, chunk):  # noqa: ANN001, ANN202
                return None
        else:
            def hook(context, chunk):  # noqa: ANN001, ANN202
                return None
        agent.register_hook("on_chunk", hook, priority=i)
    start = time.perf_counter()
    count = 0
    async for _chunk in agent.run_streaming(USER):
        count += 1
    return count / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--hooks", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[int, list[float]] = {0: [], args.hooks: []}
    await chunks_per_second(args.hooks, 100)  # warm up
    for _ in range(args.rounds):
        for hooks in results:
            results[hooks].append(await chunks_per_second(hooks, args.chunks))
    for hooks, rates in results.items():
        print(f"{hooks:2d} on_chunk hooks: {statistics.median(rates):10.0f} chunks/s (median of {args.rounds})")
    base, hooked = (statistics.median(r) for r in results.values())
    print(f"ratio with/without hooks: {hooked / base:.2f}; "
          f"cost per hook per chunk: {(1 / hooked - 1 / base) / args.hooks * 1e6:.2f} µs")


if __name__ == "__main__":
    asyncio.run(main())
