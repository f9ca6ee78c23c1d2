"""Throughput of an agent endpoint against a bare FastAPI endpoint, and first-chunk latency.

Runs, side by side in one process tree:

- ``robutler``: ``POST /bench/chat/completions`` of a Robutler agent on the offline ``test``
  model (non-streaming);
- ``bare``: a FastAPI endpoint that accepts the same body and returns a pre-built response of
  the same size;

each under uvicorn in its own subprocess on a loopback port, loaded by an httpx client with
``--concurrency`` requests in flight for ``--seconds``, alternating rounds so machine noise hits
both alike. Then it measures the latency to the first SSE chunk of streaming requests.

    python benchmarks/bench_server.py [--seconds 5] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

import httpx

BODY = {"messages": [{"role": "user", "content": "How are you today?"}]}

SERVER_CODE = r"""
import sys, json, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
kind, port = sys.argv[1], int(sys.argv[2])
if kind == "robutler":
    from robutler_core import Agent
    from robutler_server import create_app
    app = create_app([Agent("bench", "You are a benchmark.", model="test")])
else:
    payload = sys.argv[3].encode()
    app = FastAPI()
    @app.post("/bench/chat/completions")
    async def bare(request: Request):
        await request.json()
        return Response(payload, media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER_CODE, kind, str(port), *extra])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.post(f"{url}/bench/chat/completions", json=BODY, timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{kind} server did not start")


async def load(url: str, seconds: float, concurrency: int) -> float:
    """Requests per second over ``seconds`` with ``concurrency`` requests in flight."""
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                response = await client.post("/bench/chat/completions", json=BODY)
                response.raise_for_status()
                done += 1

        start_time = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - start_time)


async def first_chunk_latency(url: str, samples: int) -> list[float]:
    """Seconds from sending a streaming request to receiving its first SSE data line."""
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for samples_taken in range(samples):
            started = time.perf_counter()
            async with client.stream("POST", "/bench/chat/completions", json={**BODY, "stream": True}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and len(latencies) < samples_taken + 1:
                        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()

    robutler, robutler_url = start("robutler", [])
    sample = httpx.post(f"{robutler_url}/bench/chat/completions", json=BODY).content
    bare, bare_url = start("bare", [sample.decode()])
    try:
        rates: dict[str, list[float]] = {"robutler": [], "bare": []}
        for _ in range(args.rounds):
            for name, url in (("robutler", robutler_url), ("bare", bare_url)):
                rates[name].append(asyncio.run(load(url, args.seconds, args.concurrency)))
        latencies = asyncio.run(first_chunk_latency(robutler_url, args.latency_samples))
    finally:
        for process in (robutler, bare):
            process.terminate()
            process.wait()
    robutler_rps, bare_rps = statistics.median(rates["robutler"]), statistics.median(rates["bare"])
    report = {
        "response_bytes": len(sample),
        "concurrency": args.concurrency,
        "robutler_rps_median": round(robutler_rps, 1),
        "bare_fastapi_rps_median": round(bare_rps, 1),
        "ratio": round(robutler_rps / bare_rps, 3),
        "rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "first_chunk_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "first_chunk_ms_p95": round(statistics.quantiles(latencies, n=20)[-1] * 1000, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
