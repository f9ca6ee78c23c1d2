"""Throughput, server CPU per request and first-chunk latency of an agent endpoint against a
bare FastAPI endpoint, loaded by ``wrk`` (a load generator in C that is not the bottleneck).

Runs, side by side in one run, each under uvicorn (its defaults: uvloop and httptools when
installed, as ``uvicorn[standard]`` installs them; the run reports which) in its own
subprocess on a loopback port:

- ``robutler``: ``POST /bench/chat/completions`` of a Robutler agent on the offline ``test``
  model (``create_app``, the app ``robutler serve`` runs);
- ``bare``: a FastAPI endpoint that parses the same JSON body and returns the bytes robutler
  returned (a pre-built ``chat.completion``, or the same SSE events one write each);
- ``raw``: a plain ASGI app returning those bytes: how far the load generator goes (the
  ceiling; it must be well above both, or the ratio says nothing).

Measured:

1. non-streaming requests/s, ``wrk -t1 -c CONCURRENCY`` for ``--seconds`` per round, robutler
   and bare alternating over ``--rounds`` rounds (which goes first alternates too); the ratio
   is the median of the per-round ratios, so machine noise hits both alike. Server CPU time
   (user + system, from /proc) per request beside it: steadier than requests/s on a shared
   machine.
2. streaming (``"stream": true``): server CPU time per stream with ``--streams`` (default
   1,000) concurrent connections, alternating rounds as above.
3. time to the first SSE ``data:`` line of a streaming request, from a raw socket client on a
   kept-alive connection, robutler and bare interleaved request by request; p50 of each and
   the median of the paired differences.

    apt-get install -y wrk         # Debian/Ubuntu; macOS: brew install wrk
    python benchmarks/bench_server.py [--seconds 3] [--rounds 7] [--concurrency 32]
                                      [--streams 1000] [--latency-samples 400]
    python benchmarks/bench_server.py --profile [--seconds 10]   # cProfile of the robutler server

Prints one JSON object (or, with ``--profile``, the robutler server's top functions by
cumulative and by own time under non-streaming load).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BODY = {"messages": [{"role": "user", "content": "How are you today?"}]}
PATH = "/bench/chat/completions"

SERVER_CODE = r"""
import asyncio, json, os, sys
import uvicorn

kind, port, samples = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind == "robutler":
    from robutler_core import Agent
    from robutler_server import create_app
    app = create_app([Agent("bench", "You are a benchmark.", model="test")])
else:
    with open(samples, "rb") as f:
        sample = json.loads(f.read())
    payload = sample["completion"].encode()
    events = [e.encode() for e in sample["events"]]
if kind == "bare":
    from fastapi import FastAPI, Request
    from fastapi.responses import Response, StreamingResponse
    app = FastAPI()

    @app.post("/bench/chat/completions")
    async def bare(request: Request):
        body = await request.json()
        if body.get("stream"):
            async def stream():
                for event in events:
                    yield event
            return StreamingResponse(stream(), media_type="text/event-stream")
        return Response(payload, media_type="application/json")
elif kind == "raw":
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
reported = False

async def reporting(scope, receive, send):  # says which loop and HTTP parser serve, once
    global reported
    if not reported:
        reported = True
        print(json.dumps({"loop": type(asyncio.get_running_loop()).__module__,
                          "http": config.http_protocol_class.__module__}), flush=True)
    await app(scope, receive, send)

config.app = reporting
server = uvicorn.Server(config)
profile = os.environ.get("BENCH_PROFILE")
if profile:  # stopped through stdin: a SIGTERM would end the process before the dump
    import cProfile, threading

    def stop_on_stdin():
        sys.stdin.readline()
        server.should_exit = True

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    profiler = cProfile.Profile()
    profiler.runcall(server.run)
    profiler.dump_stats(profile)
else:
    server.run()
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %%d, "duration_us": %%d, "socket_errors": %%d, "status_errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


class Server:
    """One uvicorn subprocess of ``kind`` on a free loopback port."""

    def __init__(self, kind: str, samples: str, profile: str | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        if profile:
            env["BENCH_PROFILE"] = profile
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, kind, str(self.port), samples],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        self.profiled = bool(profile)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server did not start") from None
                time.sleep(0.05)
        post(self.url, BODY)  # the first request makes the app report its loop and parser
        self.runtime = json.loads(self.process.stdout.readline())

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.profiled:
            self.process.communicate("stop\n", timeout=120)
            return
        self.process.terminate()
        self.process.wait(timeout=60)


def post(url: str, body: dict) -> bytes:
    request = urllib.request.Request(
        url + PATH, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def wrk(server: Server, script: str, seconds: int, connections: int) -> dict:
    """One wrk run against ``server``: requests/s and the server's CPU seconds per request."""
    cpu = server.cpu_seconds()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", script,
         server.url + PATH],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = server.cpu_seconds() - cpu
    result = json.loads(out.split("RESULT ", 1)[1])
    if result["socket_errors"] or result["status_errors"]:
        raise RuntimeError(f"wrk against {server.kind}: errors: {result}\n{out}")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_ms_per_request"] = cpu * 1000 / result["requests"]
    return result


def alternating(servers: list[Server], script: str, rounds: int, seconds: int, connections: int) -> dict:
    """``rounds`` wrk runs of each server, alternating (and alternating which goes first)."""
    runs: dict[str, list[dict]] = {s.kind: [] for s in servers}
    for round_number in range(rounds):
        for server in servers if round_number % 2 == 0 else list(reversed(servers)):
            runs[server.kind].append(wrk(server, script, seconds, connections))
    return runs


class LatencyClient:
    """A raw HTTP/1.1 client on one kept-alive connection: little and constant overhead."""

    def __init__(self, port: int, body: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def sample(self) -> float:
        """Seconds from sending the request to receiving the first ``data:`` line; reads the
        rest of the (chunked) response so the connection is ready for the next."""
        buffer = b""
        started = time.perf_counter()
        self.sock.sendall(self.request)
        first = None
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed the connection")
            buffer += data
            if first is None and b"data: " in buffer:
                first = time.perf_counter() - started
                if b"transfer-encoding: chunked" not in buffer.split(b"\r\n\r\n", 1)[0].lower():
                    raise RuntimeError("expected a chunked streaming response")
            if first is not None and buffer.endswith(b"0\r\n\r\n"):
                return first

    def close(self) -> None:
        self.sock.close()


def latency(servers: list[Server], samples: int) -> dict:
    """First-chunk latency of each server, interleaved request by request."""
    body = json.dumps({**BODY, "stream": True}).encode()
    clients = {s.kind: LatencyClient(s.port, body) for s in servers}
    for client in clients.values():  # warm the connection and the code paths
        for _ in range(20):
            client.sample()
    times: dict[str, list[float]] = {kind: [] for kind in clients}
    for i in range(samples):
        for kind, client in clients.items() if i % 2 == 0 else reversed(clients.items()):
            times[kind].append(client.sample() * 1000)
    for client in clients.values():
        client.close()
    kinds = list(times)
    paired = [a - b for a, b in zip(times[kinds[0]], times[kinds[1]])]
    return {
        **{f"{kind}_p50_ms": round(statistics.median(v), 3) for kind, v in times.items()},
        **{f"{kind}_p95_ms": round(statistics.quantiles(v, n=20)[-1], 3) for kind, v in times.items()},
        f"delta_{kinds[0]}_minus_{kinds[1]}_median_ms": round(statistics.median(paired), 3),
    }


def samples_file(directory: str) -> str:
    """Capture what robutler answers (completion and SSE events) for the bare servers."""
    robutler = Server("robutler", "")
    try:
        completion = post(robutler.url, BODY).decode()
        streamed = post(robutler.url, {**BODY, "stream": True}).decode()
    finally:
        robutler.stop()
    events = [event + "\n\n" for event in streamed.split("\n\n") if event.strip()]
    path = os.path.join(directory, "samples.json")
    with open(path, "w") as f:
        json.dump({"completion": completion, "events": events}, f)
    return path


def lua(directory: str, name: str, body: dict) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(WRK_SCRIPT % json.dumps(json.dumps(body)))
    return path


def summary(runs: dict[str, list[dict]], first: str, second: str) -> dict:
    ratios = [a["rps"] / b["rps"] for a, b in zip(runs[first], runs[second])]
    cpu_ratios = [a["cpu_ms_per_request"] / b["cpu_ms_per_request"] for a, b in zip(runs[first], runs[second])]
    return {
        **{f"{kind}_rps_median": round(statistics.median(r["rps"] for r in rs), 1) for kind, rs in runs.items()},
        f"rps_ratio_{first}_to_{second}": round(statistics.median(ratios), 3),
        "rps_ratio_per_round": [round(r, 3) for r in ratios],
        **{
            f"{kind}_cpu_ms_per_request": round(statistics.median(r["cpu_ms_per_request"] for r in rs), 3)
            for kind, rs in runs.items()
        },
        f"cpu_ratio_{first}_to_{second}": round(statistics.median(cpu_ratios), 3),
        **{f"{kind}_p50_latency_ms": round(statistics.median(r["p50_us"] for r in rs) / 1000, 2) for kind, rs in runs.items()},
    }


def profile(directory: str, seconds: int, concurrency: int, top: int) -> None:
    """Load the robutler server under cProfile and print where its time goes."""
    import pstats

    path = os.path.join(directory, "robutler.prof")
    server = Server("robutler", "", profile=path)
    try:
        result = wrk(server, lua(directory, "post.lua", BODY), seconds, concurrency)
    finally:
        server.stop()
    print(f"# {result['requests']} requests in {seconds} s under cProfile ({result['rps']:.0f}/s)")
    stats = pstats.Stats(path)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=7, help="wrk runs per server (alternating)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections, non-streaming")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streaming connections")
    parser.add_argument("--stream-rounds", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=400)
    parser.add_argument("--profile", action="store_true", help="cProfile the robutler server instead")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(
            "bench_server.py needs wrk (https://github.com/wg/wrk) on PATH: "
            "apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)"
        )

    with tempfile.TemporaryDirectory() as directory:
        if args.profile:
            profile(directory, args.seconds, args.concurrency, args.top)
            return
        samples = samples_file(directory)
        servers = [Server(kind, samples) for kind in ("robutler", "bare", "raw")]
        robutler, bare, raw = servers
        try:
            post_lua = lua(directory, "post.lua", BODY)
            stream_lua = lua(directory, "stream.lua", {**BODY, "stream": True})
            ceiling = wrk(raw, post_lua, args.seconds, args.concurrency)
            plain = alternating([robutler, bare], post_lua, args.rounds, args.seconds, args.concurrency)
            streams = alternating([robutler, bare], stream_lua, args.stream_rounds, args.seconds, args.streams)
            first_chunk = latency([robutler, bare], args.latency_samples)
        finally:
            for server in servers:
                server.stop()
    report = {
        "runtime": {s.kind: s.runtime for s in servers},
        "load_generator": f"wrk -t1, {args.seconds} s per run",
        "ceiling_raw_asgi_rps": round(ceiling["rps"], 1),
        "non_streaming": {"concurrency": args.concurrency, **summary(plain, "robutler", "bare")},
        "streaming": {"concurrent_streams": args.streams, **summary(streams, "robutler", "bare")},
        "first_chunk": {"samples": args.latency_samples, **first_chunk},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
