"""Throughput of the Responses API against chat completions, on the same agent, in one run.

One ``robutler_server`` app (an agent on the offline ``test`` model) under uvicorn in a
subprocess on a loopback port; an httpx client keeps ``--concurrency`` requests in flight for
``--seconds`` per measurement, and the four kinds of request take turns for ``--rounds``
short rounds, so that machine noise hits them alike (a ratio is taken within each round, then
the median of the rounds' ratios is reported):

- ``chat``: ``POST /bench/chat/completions``;
- ``responses``: ``POST /bench/responses`` (stored in the default in-memory store, as a client
  that does not say ``store: false`` gets);
- ``chat_stream`` / ``responses_stream``: the same with ``stream: true``, each stream read to
  its end (``[DONE]``; ``response.completed``).

Prints JSON: the median requests per second of each kind and the median of the per-round
ratios Responses / chat (target: within 10%, i.e. >= 0.9); and the server process's CPU time
per request of each kind (user + system, from ``/proc`` on Linux), whose ratio chat / Responses
is the throughput ratio a server limited by its own CPU would see, and which other load on
the machine disturbs much less than the rates.

    python benchmarks/bench_responses.py [--seconds 2] [--rounds 15] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import httpx

from bench_server import free_port

SERVER_CODE = r"""
import sys, uvicorn
from robutler_core import Agent
from robutler_server import create_app
app = create_app([Agent("bench", "You are a benchmark.", model="test")])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

TEXT = "How are you today?"
KINDS = {
    "chat": ("/bench/chat/completions", {"messages": [{"role": "user", "content": TEXT}]}),
    "responses": ("/bench/responses", {"input": TEXT}),
    "chat_stream": ("/bench/chat/completions", {"messages": [{"role": "user", "content": TEXT}], "stream": True}),
    "responses_stream": ("/bench/responses", {"input": TEXT, "stream": True}),
}


def start() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER_CODE, str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.terminate()
    raise RuntimeError("the server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, kind: str, seconds: float, concurrency: int, counts: dict[str, int] | None = None) -> float:
    """Requests per second of ``kind`` over ``seconds`` with ``concurrency`` in flight
    (added to ``counts[kind]`` when given)."""
    path, body = KINDS[kind]
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                if body.get("stream"):
                    async with client.stream("POST", path, json=body) as response:
                        response.raise_for_status()
                        last = ""
                        async for line in response.aiter_lines():
                            last = line or last
                    if "[DONE]" not in last and "response.completed" not in last:
                        raise RuntimeError(f"{kind}: the stream ended with {last[:80]!r}")
                else:
                    response = await client.post(path, json=body)
                    response.raise_for_status()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if counts is not None:
            counts[kind] += done
        return done / (time.perf_counter() - started)


def ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the rounds' ratios (each round's two kinds ran seconds apart)."""
    return round(statistics.median(n / d for n, d in zip(numerators, denominators)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    process, url = start()
    try:
        for kind in KINDS:  # warm up every path once
            asyncio.run(load(url, kind, 0.5, 2))
        rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
        requests = dict.fromkeys(KINDS, 0)
        cpu = dict.fromkeys(KINDS, 0.0)
        for _ in range(args.rounds):
            for kind in KINDS:
                before = cpu_seconds(process.pid)
                rates[kind].append(asyncio.run(load(url, kind, args.seconds, args.concurrency, requests)))
                cpu[kind] += cpu_seconds(process.pid) - before
    finally:
        process.terminate()
        process.wait()
    median = {kind: statistics.median(values) for kind, values in rates.items()}
    report = {
        "concurrency": args.concurrency,
        "seconds_per_measurement": args.seconds,
        "rps_median": {kind: round(value, 1) for kind, value in median.items()},
        "ratio_responses_to_chat": ratio(rates["responses"], rates["chat"]),
        "ratio_responses_stream_to_chat_stream": ratio(rates["responses_stream"], rates["chat_stream"]),
        "server_cpu_ms_per_request": {kind: round(cpu[kind] / requests[kind] * 1000, 3) for kind in KINDS},
        "cpu_ratio_chat_to_responses": round(cpu["chat"] / requests["chat"] / (cpu["responses"] / requests["responses"]), 3)
        if cpu["responses"] else None,
        "cpu_ratio_chat_stream_to_responses_stream": round(
            cpu["chat_stream"] / requests["chat_stream"] / (cpu["responses_stream"] / requests["responses_stream"]), 3)
        if cpu["responses_stream"] else None,
        "rounds": {kind: [round(v, 1) for v in values] for kind, values in rates.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
