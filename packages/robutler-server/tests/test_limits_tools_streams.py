"""Over real uvicorn: tool timeouts and the request deadline, the pool of synchronous tools (a
hung tool of one agent does not delay another agent), SSE keep-alives during a slow tool, and
CORS."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from robutler_core import Agent, tool
from robutler_server import create_app
from robutler_server.config import ServerConfig
from robutler_server.testing import serve_in_thread

USER = [{"role": "user", "content": "hi"}]


def test_a_tool_past_its_timeout_gives_the_model_an_error_and_the_request_answers():
    release = threading.Event()

    @tool(timeout=0.3)
    def stuck() -> str:
        """Blocks until released."""
        release.wait(30)
        return "released"

    app = create_app([Agent("a", model="test", tools=[stuck])])
    try:
        with serve_in_thread(app) as base:
            started = time.monotonic()
            response = httpx.post(f"{base}/a/chat/completions", json={"messages": USER}, timeout=30)
            assert time.monotonic() - started < 5
            assert response.status_code == 200
            assert "Error: tool 'stuck' timed out after 0.3 s" in response.json()["choices"][0]["message"]["content"]
    finally:
        release.set()


def test_a_request_past_request_timeout_is_504_or_an_error_event():
    @tool(timeout=30)
    async def slow() -> str:
        """Takes long."""
        await asyncio.sleep(30)
        return "never"

    app = create_app([Agent("a", model="test", tools=[slow], request_timeout=0.5)])
    with serve_in_thread(app) as base:
        response = httpx.post(f"{base}/a/chat/completions", json={"messages": USER}, timeout=30)
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "request_timeout"
        response = httpx.post(f"{base}/a/responses", json={"input": "hi"}, timeout=30)
        assert response.status_code == 504


def test_a_hung_sync_tool_does_not_delay_another_agents_requests():
    """Eight requests whose sync tool hangs (more than the event loop's default executor has
    threads on a small machine) leave the default executor (DNS lookups, pricing) and the other
    agent's sync tools free."""
    release = threading.Event()
    hung_calls = threading.Semaphore(0)

    def hang() -> str:
        """Blocks until released."""
        hung_calls.release()
        release.wait(60)
        return "released"

    def answer() -> str:
        """Answers at once, from a thread."""
        return f"answered on {threading.current_thread().name}"

    @tool
    async def resolve() -> str:
        """Looks a name up (asyncio runs getaddrinfo on the default executor)."""
        await asyncio.get_running_loop().getaddrinfo("localhost", 80)
        return "resolved"

    app = create_app(
        [Agent("hung", model="test", tools=[hang], tool_timeout=60), Agent("ok", model="test", tools=[answer, resolve])],
        server=ServerConfig(tool_threads=12),
    )
    try:
        with serve_in_thread(app) as base, ThreadPoolExecutor(8) as clients:
            stuck = [
                clients.submit(httpx.post, f"{base}/hung/chat/completions", json={"messages": USER}, timeout=60)
                for _ in range(8)
            ]
            for _ in range(8):
                assert hung_calls.acquire(timeout=10)
            started = time.monotonic()
            response = httpx.post(f"{base}/ok/chat/completions", json={"messages": USER}, timeout=30)
            elapsed = time.monotonic() - started
            assert response.status_code == 200
            content = response.json()["choices"][0]["message"]["content"]
            assert "answered on robutler-tool" in content
            assert "resolved" in content
            assert elapsed < 2, elapsed
            assert not any(f.done() for f in stuck)
            release.set()
            assert all(f.result(timeout=30).status_code == 200 for f in stuck)
    finally:
        release.set()


def test_sse_pings_keep_a_stream_alive_during_a_slow_tool():
    @tool
    async def slow() -> str:
        """Takes a second."""
        await asyncio.sleep(1.1)
        return "done"

    app = create_app([Agent("a", model="test", tools=[slow])], server=ServerConfig(sse_ping=0.25))
    with serve_in_thread(app) as base:
        for path, body in (("chat/completions", {"messages": USER, "stream": True}), ("responses", {"input": "hi", "stream": True})):
            with httpx.stream("POST", f"{base}/a/{path}", json=body, timeout=30) as response:
                assert response.status_code == 200
                lines = [line for line in response.iter_lines()]
            pings = [i for i, line in enumerate(lines) if line == ": ping"]
            assert len(pings) >= 2, lines
            data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
            assert data, lines  # the events are intact around the pings
            if path == "chat/completions":
                assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
                assert "done" in "".join(d["choices"][0]["delta"].get("content") or "" for d in data if d["choices"])


def test_no_ping_on_a_quick_stream_or_when_turned_off():
    app = create_app([Agent("a", model="test")], server=ServerConfig(sse_ping=0))
    with serve_in_thread(app) as base:
        with httpx.stream("POST", f"{base}/a/chat/completions", json={"messages": USER, "stream": True}) as response:
            assert ": ping" not in list(response.iter_lines())


def test_cors_preflight_and_response_headers_for_configured_origins_only():
    app = create_app([Agent("a", model="test")], server=ServerConfig(cors_origins=["https://app.example.com"]))
    with serve_in_thread(app) as base:
        preflight = httpx.options(f"{base}/a/chat/completions", headers={
            "origin": "https://app.example.com", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        })
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        response = httpx.post(f"{base}/a/chat/completions", json={"messages": USER},
                              headers={"origin": "https://app.example.com"})
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "retry-after" in response.headers["access-control-expose-headers"].lower()
        other = httpx.options(f"{base}/a/chat/completions", headers={
            "origin": "https://evil.example.com", "access-control-request-method": "POST"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers

    bare = create_app([Agent("a", model="test")])
    with serve_in_thread(bare) as base:
        response = httpx.post(f"{base}/a/chat/completions", json={"messages": USER},
                              headers={"origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in response.headers
