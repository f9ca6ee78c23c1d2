"""What the mcp skill adds to an MCP tool call, side by side in one run:

- per-call latency (p50, p95) of the ``echo`` tool of an MCP server (the SDK's ``MCPServer``,
  stdio or Streamable HTTP) called directly with the SDK's ``mcp.Client`` (the very session
  the skill holds, so the same server process answers all three), through the skill's tool
  (``Tool.invoke``: schema check with jsonschema, result text), and through the agent
  (``Agent.call_tool``: the request frame with ``on_connection`` and ``finalize_connection``,
  ``before/after_toolcall``, the tool); the three alternate call by call, so drift hits them
  alike. Target: under 1 ms added at p50.
- tool calls per second with ``--concurrency`` (50) concurrent requests over that one shared
  session, through the agent and directly.

    python benchmarks/bench_mcp.py [--transport stdio|streamable-http] [--calls 2000]
                                   [--concurrency 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from robutler_core import Agent
from robutler_skill_mcp import MCPSkill

ECHO_SERVER = Path(__file__).resolve().parents[1] / "packages/robutler-skill-mcp/tests/mcp_echo_server.py"
ARGUMENTS = {"text": "benchmark"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(calls: dict[str, Callable[[], Awaitable[Any]]], count: int) -> dict[str, list[float]]:
    for call in calls.values():  # warm up
        for _ in range(50):
            await call()
    results: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            start = time.perf_counter()
            await call()
            results[name].append((time.perf_counter() - start) * 1000)
    return results


async def throughput(call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    for name in ("httpx2", "mcp", "uvicorn"):  # per-request INFO lines would be timed too
        logging.getLogger(name).setLevel(logging.WARNING)

    serving = None
    if args.transport == "stdio":
        server_config: dict[str, Any] = {"command": sys.executable, "args": [str(ECHO_SERVER), "echo"]}
    else:
        import importlib.util

        from robutler_server.testing import serve_in_thread

        spec = importlib.util.spec_from_file_location("mcp_echo_server", ECHO_SERVER)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        serving = serve_in_thread(module.build("bench", only=("echo",)).streamable_http_app())
        url = serving.__enter__() + "/mcp"
        server_config = {"url": url}

    agent = Agent("bench", model="test", skills={"mcp": MCPSkill({"servers": {"echo": server_config}})})
    await agent.initialize()
    tool = next(t for t in agent.tools_for_scope("all") if t.name == "echo")
    direct = agent.skills["mcp"].connections["echo"].client
    assert direct is not None, "the echo server did not start"
    try:
        calls = {
            "SDK client, direct": lambda: direct.call_tool("echo", ARGUMENTS),
            "skill tool (Tool.invoke)": lambda: tool.invoke(ARGUMENTS),
            "agent (Agent.call_tool)": lambda: agent.call_tool("echo", ARGUMENTS, agent.new_context([], None, False)),
        }
        print(f"MCP server over {args.transport}; {args.calls} calls each, interleaved")
        results = await latencies(calls, args.calls)
        base = statistics.median(results["SDK client, direct"])
        for name, values in results.items():
            p50 = statistics.median(values)
            print(f"  {name:28s} p50 {p50:7.3f} ms  p95 {percentile(values, 0.95):7.3f} ms  "
                  f"added at p50 {p50 - base:+7.3f} ms")
        print(f"{args.concurrency} concurrent requests for {args.seconds:g} s each, one shared session")
        agent_rate = await throughput(calls["agent (Agent.call_tool)"], args.concurrency, args.seconds)
        direct_rate = await throughput(calls["SDK client, direct"], args.concurrency, args.seconds)
        print(f"  agent (Agent.call_tool)      {agent_rate:8.0f} tool calls/s")
        print(f"  SDK client, direct           {direct_rate:8.0f} tool calls/s  (ratio {agent_rate / direct_rate:.2f})")
    finally:
        await agent.close()
        if serving is not None:
            serving.__exit__(None, None, None)


if __name__ == "__main__":
    asyncio.run(main())
