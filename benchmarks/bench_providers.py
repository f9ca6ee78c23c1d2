"""Client-side overhead of the native provider skills against LiteLLM, side by side.

Both skills call the same local fake OpenAI-compatible server
(``robutler_core.testing.fake_openai``), so the difference is the client stack: the ``openai``
SDK behind ``OpenAISkill`` against LiteLLM's ``acompletion`` behind ``LiteLLMSkill``, each
with the Robutler translation around it. Rounds alternate so machine noise hits both alike.

Measured per skill: median and p95 latency of a non-streaming ``chat_completion``, and median
latency to the first chunk of ``chat_completion_stream``, over ``--requests`` sequential calls
per round; the ratio is LiteLLM / native (above 1: the native skill is faster).

    python benchmarks/bench_providers.py [--rounds 3] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from robutler_core.testing.fake_openai import FakeOpenAIServer  # noqa: E402
from robutler_skill_litellm import LiteLLMSkill  # noqa: E402
from robutler_skill_openai import OpenAISkill  # noqa: E402

MESSAGES = [{"role": "user", "content": "How are you today?"}]


async def timed_calls(skill, requests: int) -> tuple[list[float], list[float]]:
    full, first = [], []
    for _ in range(requests):
        start = time.perf_counter()
        await skill.chat_completion(list(MESSAGES))
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        stream = skill.chat_completion_stream(list(MESSAGES))
        await anext(stream)
        first.append(time.perf_counter() - start)
        async for _chunk in stream:
            pass
    return full, first


def p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with FakeOpenAIServer() as upstream:
        skills = {
            "native (OpenAISkill, openai SDK)": OpenAISkill(
                {"model": "fake-model", "base_url": upstream.base_url, "api_key": "sk-bench", "max_retries": 0}),
            "LiteLLMSkill (litellm)": LiteLLMSkill(
                {"model": "openai/fake-model", "api_base": upstream.base_url, "api_key": "sk-bench"}),
        }
        results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in skills}
        for skill in skills.values():  # warm up: imports, connection pools
            await timed_calls(skill, 5)
        for _ in range(args.rounds):
            for name, skill in skills.items():
                full, first = await timed_calls(skill, args.requests)
                results[name][0].extend(full)
                results[name][1].extend(first)
    print(f"{'skill':36} {'p50 ms':>8} {'p95 ms':>8} {'first chunk p50 ms':>20}")
    medians = {}
    for name, (full, first) in results.items():
        medians[name] = (statistics.median(full), statistics.median(first))
        print(f"{name:36} {medians[name][0] * 1e3:8.2f} {p95(full) * 1e3:8.2f} {medians[name][1] * 1e3:20.2f}")
    native, litellm = medians.values()
    print(f"ratio LiteLLM / native: {litellm[0] / native[0]:.2f} (non-streaming p50), "
          f"{litellm[1] / native[1]:.2f} (first chunk p50)")


if __name__ == "__main__":
    asyncio.run(main())
