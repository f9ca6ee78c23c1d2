"""The limits in the agents file (per agent and the ``server:`` section) and on the command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from robutler_server.config import AgentsFileError, ServerConfig, load_agents_file


def test_the_agents_file_carries_per_agent_limits_and_the_server_section(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text(
        "agents:\n"
        "  - name: a\n    model: test\n    rate_limit: 10/second;100/minute\n    request_timeout: 30\n"
        "    tool_timeout: 5\n    max_concurrent_requests: 4\n"
        "  - name: b\n    model: test\n"
        "server:\n  max_body_bytes: 1000\n  cors_origins: [https://app.example.com]\n  sse_ping: 5\n"
        "  rate_limit_storage: redis://127.0.0.1:6379\n"
    )
    agents, limits, server = load_agents_file(path)
    a, b = agents
    assert (a.request_timeout, a.tool_timeout) == (30.0, 5.0)
    assert (b.request_timeout, b.tool_timeout) == (600.0, 60.0)
    assert limits["a"].rate_limit == "10/second;100/minute" and limits["a"].max_concurrent_requests == 4
    assert limits["b"].rate_limit is None and limits["b"].max_concurrent_requests is None
    assert server.max_body_bytes == 1000 and server.sse_ping == 5
    assert server.rate_limit_storage == "redis://127.0.0.1:6379"
    merged = server.with_options(max_body_bytes=None, sse_ping=0, cors_origins=("http://localhost:3000",))
    assert merged.max_body_bytes == 1000 and merged.sse_ping == 0
    assert merged.cors_origins == ["https://app.example.com", "http://localhost:3000"]


def test_bad_limits_are_problems_naming_the_agent_and_field(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text(
        "agents:\n"
        "  - name: a\n    model: test\n    rate_limit: sixty a minute\n    tool_timeout: 0\n"
        "server:\n  max_body_bytes: -1\n  surprise: 1\n"
    )
    with pytest.raises(AgentsFileError) as raised:
        load_agents_file(path)
    problems = "\n".join(raised.value.problems)
    assert "server.max_body_bytes: Input should be greater than or equal to 1" in problems
    assert "server.surprise: Extra inputs are not permitted" in problems
    path.write_text("agents:\n  - name: a\n    model: test\n    rate_limit: sixty a minute\n    tool_timeout: 0\n")
    with pytest.raises(AgentsFileError) as raised:
        load_agents_file(path)
    problems = raised.value.problems
    assert any("agent 'a': rate_limit:" in p and "'sixty a minute' is not a rate limit" in p for p in problems)
    assert any("agent 'a': tool_timeout: Input should be greater than 0" in p for p in problems)


def test_command_line_options_override_the_file(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - name: a\n    model: test\nserver:\n  max_body_bytes: 100000\n")
    process = subprocess.Popen(
        [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", str(path), "--port", "0",
         "--max-body-bytes", "300", "--cors-origin", "https://one.example", "--cors-origin", "https://two.example"],
        stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    try:
        base = None
        deadline = time.monotonic() + 30
        while base is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            found = re.search(r"bound (http://\S+?:\d+)", line)
            if found:
                base = found.group(1)
            elif not line and process.poll() is not None:
                pytest.fail(f"robutler serve exited with {process.returncode}")
        assert base
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        too_big = httpx.post(f"{base}/a/chat/completions", json={"messages": [{"role": "user", "content": "x" * 400}]})
        assert too_big.status_code == 413
        for origin in ("https://one.example", "https://two.example"):
            preflight = httpx.options(f"{base}/a/chat/completions",
                                      headers={"origin": origin, "access-control-request-method": "POST"})
            assert preflight.headers.get("access-control-allow-origin") == origin
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_bad_rate_limit_storage_on_the_command_line_is_one_error_line(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - name: a\n    model: test\n")
    result = subprocess.run(
        [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", str(path), "--port", "0",
         "--rate-limit-storage", "memcache://nowhere"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "rate limit storage 'memcache://nowhere' is not supported" in result.stderr


def test_server_defaults():
    server = ServerConfig()
    assert server.max_body_bytes == 4 * 1024 * 1024
    assert server.sse_ping == 15 and server.cors_origins == [] and server.rate_limit_storage == "memory://"
