"""Limits that protect the server, over real uvicorn: body size (413), message and tool counts
(400), rate limits (429 with Retry-After, in memory and in Redis), concurrency (503)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from robutler_core import Agent, tool
from robutler_server import create_app
from robutler_server.config import AgentLimits, ServerConfig
from robutler_server.testing import serve_in_thread

USER = [{"role": "user", "content": "hi"}]


def identify(context) -> None:
    """An auth hook: the caller is who the ``x-user`` header says."""
    context.peer_user_id = context.headers.get("x-user")


def chat(base: str, agent: str, **extra) -> httpx.Response:
    headers = extra.pop("headers", {})
    return httpx.post(f"{base}/{agent}/chat/completions", json={"messages": USER, **extra}, headers=headers, timeout=30)


def test_a_body_over_the_limit_is_413_before_it_is_parsed():
    app = create_app([Agent("a", model="test")], server=ServerConfig(max_body_bytes=1000))
    with serve_in_thread(app) as base:
        # Not JSON at all: a parser would have said 400; the size is checked first.
        response = httpx.post(f"{base}/a/chat/completions", content=b"x" * 5000,
                              headers={"content-type": "application/json"})
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "request_too_large"
        assert error["type"] == "invalid_request_error"
        assert "5000 bytes" in error["message"] and "1000 bytes" in error["message"]

        # Without a Content-Length (chunked): refused once the bytes read pass the limit.
        def chunks():
            for _ in range(10):
                yield b"y" * 500

        response = httpx.post(f"{base}/a/responses", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert "1000 bytes" in response.json()["error"]["message"]

        # Under the limit: served.
        assert chat(base, "a").status_code == 200


def test_too_many_messages_or_tools_is_400_on_both_wire_formats():
    app = create_app([Agent("a", model="test")], server=ServerConfig(max_messages=3, max_tools=1))
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object"}}} for i in range(2)]
    with serve_in_thread(app) as base:
        response = httpx.post(f"{base}/a/chat/completions", json={"messages": USER * 4})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "messages"
        assert "at most 3" in response.json()["error"]["message"]
        response = httpx.post(f"{base}/v1/chat/completions", json={"model": "a", "messages": USER, "tools": tools})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "tools"
        response = httpx.post(f"{base}/a/responses", json={"input": USER * 4})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "too_many_messages"
        assert httpx.post(f"{base}/a/chat/completions", json={"messages": USER * 3}).status_code == 200


def check_rate_limit(storage: str) -> None:
    """Two requests per 2 s per caller of the agent: the third is 429 with Retry-After, another
    caller is not affected, and after the window the caller is served again."""
    name = f"limited-{uuid.uuid4().hex[:8]}"  # fresh counters in a shared Redis
    agent = Agent(name, model="test", hooks={"on_connection": [identify]})
    app = create_app([agent], server=ServerConfig(rate_limit_storage=storage),
                     limits={name: AgentLimits(rate_limit="2/2 seconds")})
    with serve_in_thread(app) as base:
        for _ in range(2):
            assert chat(base, name, headers={"x-user": "ann"}).status_code == 200
        counted = time.monotonic()  # both requests are in the window by now
        refused = chat(base, name, headers={"x-user": "ann"})
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 2
        # The Responses API counts against the same limit.
        assert httpx.post(f"{base}/{name}/responses", json={"input": "hi"}, headers={"x-user": "ann"}).status_code == 429
        # Another caller has counters of its own.
        assert chat(base, name, headers={"x-user": "bob"}).status_code == 200
        # Agent descriptions and model lists are not counted.
        assert httpx.get(f"{base}/{name}", headers={"x-user": "ann"}).status_code == 200
        time.sleep(max(0.0, counted + 2.1 - time.monotonic()))
        assert chat(base, name, headers={"x-user": "ann"}).status_code == 200


def test_rate_limit_in_memory():
    check_rate_limit("memory://")


def test_without_an_auth_hook_the_caller_is_the_client_address():
    app = create_app([Agent("a", model="test")], limits={"a": AgentLimits(rate_limit="1/minute")})
    with serve_in_thread(app) as base:
        assert chat(base, "a").status_code == 200
        assert chat(base, "a").status_code == 429
        retry_after = int(chat(base, "a").headers["retry-after"])
        assert 50 <= retry_after <= 60


REDIS_URL = os.environ.get("ROBUTLER_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def redis_answers() -> bool:
    host_port = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=1).close()
    except OSError:
        return False
    return True


# Set by .ci/run when a Redis answers: then these tests must run; otherwise they run when the
# default address answers.
needs_redis = pytest.mark.skipif(
    "ROBUTLER_TEST_REDIS_URL" not in os.environ and not redis_answers(), reason=f"no Redis answers at {REDIS_URL}"
)


@needs_redis
def test_rate_limit_in_redis():
    check_rate_limit(REDIS_URL)


@needs_redis
def test_servers_sharing_a_redis_share_the_counters():
    name = f"shared-{uuid.uuid4().hex[:8]}"
    apps = [
        create_app([Agent(name, model="test")], server=ServerConfig(rate_limit_storage=REDIS_URL),
                   limits={name: AgentLimits(rate_limit="2/minute")})
        for _ in range(2)
    ]
    with serve_in_thread(apps[0]) as first, serve_in_thread(apps[1]) as second:
        assert chat(first, name).status_code == 200
        assert chat(second, name).status_code == 200
        assert chat(first, name).status_code == 429
        assert chat(second, name).status_code == 429


def test_a_bad_rate_limit_storage_is_refused_at_start():
    from robutler_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="memcache://x' is not supported"):
        create_app([Agent("a", model="test")], server=ServerConfig(rate_limit_storage="memcache://x"))


def test_beyond_max_concurrent_requests_is_503_with_retry_after():
    release = threading.Event()
    entered = threading.Event()

    @tool
    async def wait() -> str:
        """Waits until the test releases it."""
        entered.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        return "released"

    slow = Agent("slow", model="test", tools=[wait])
    app = create_app([slow, Agent("other", model="test")], limits={"slow": AgentLimits(max_concurrent_requests=1)})
    with serve_in_thread(app) as base, ThreadPoolExecutor(1) as pool:
        first = pool.submit(chat, base, "slow")
        assert entered.wait(10)
        refused = chat(base, "slow")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
        streamed = httpx.post(f"{base}/slow/chat/completions", json={"messages": USER, "stream": True})
        assert streamed.status_code == 503
        assert chat(base, "other").status_code == 200  # another agent is not limited
        release.set()
        assert first.result(timeout=10).status_code == 200
        assert chat(base, "slow").status_code == 200  # the slot was given back


def test_a_total_rate_limit_counts_every_caller_of_the_agent():
    agent = Agent("a", model="test", hooks={"on_connection": [identify]})
    app = create_app([agent], limits={"a": AgentLimits(rate_limit="5/minute", total_rate_limit="2/minute")})
    with serve_in_thread(app) as base:
        assert chat(base, "a", headers={"x-user": "ann"}).status_code == 200
        assert chat(base, "a", headers={"x-user": "bob"}).status_code == 200
        refused = chat(base, "a", headers={"x-user": "cid"})
        assert refused.status_code == 429
        assert "agent 'a' is at its total rate limit of 2 per 1 minute" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) > 50
