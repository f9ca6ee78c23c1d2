"""robutler-skill-mcp end to end through the real ``robutler serve``: the agent's model calls a
tool of a stdio MCP server (the official openai client, streaming and not), GET /{agent} says
which server is down, the official mcp client uses the agent at /{agent}/mcp, and a stdio
server does not outlive a killed ``robutler serve``."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from mcp import Client

from robutler_server.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
ROBUTLER = str(Path(sys.executable).with_name("robutler"))
ECHO_SERVER = ROOT / "packages/robutler-skill-mcp/tests/mcp_echo_server.py"
ANSWER = "Tool results: echo returned echo: a"


def agents_file(tmp_path):
    config = {"agents": [{
        "name": "clock", "model": "test",
        "skills": {"mcp": {"servers": {
            "echo": {"command": sys.executable, "args": [str(ECHO_SERVER), "echo"]},
            "gone": {"url": f"http://127.0.0.1:{free_port()}/mcp", "prefix": "gone_", "connect_timeout": 2},
        }}},
    }]}
    path = tmp_path / "agents.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


class Served:
    """``robutler serve FILE`` in a subprocess, its output in a file."""

    def __init__(self, path, log):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log
        self.process = subprocess.Popen(
            [ROBUTLER, "serve", str(path), "--port", self.url.rsplit(":", 1)[1]],
            stdout=log.open("w"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"robutler serve did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def _healthy(self):
        try:
            return httpx.get(f"{self.url}/health").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mcp")
    server = Served(agents_file(tmp_path), tmp_path / "serve.log")
    yield server
    children = psutil.Process(server.process.pid).children(recursive=True)
    server.stop()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind after shutdown: {alive}"


def test_the_model_calls_an_mcp_tool_and_the_answer_carries_its_result(served):
    client = openai.OpenAI(base_url=f"{served.url}/clock", api_key="unused")
    completion = client.chat.completions.create(model="clock", messages=[{"role": "user", "content": "echo a"}])
    assert completion.choices[0].message.content == ANSWER
    chunks = client.chat.completions.create(model="clock", messages=[{"role": "user", "content": "echo a"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER


def test_the_agent_info_says_which_server_is_down(served):
    info = httpx.get(f"{served.url}/clock").json()
    servers = info["status"]["mcp"]["servers"]
    assert servers["echo"] == {"transport": "stdio", "state": "connected", "tools": 1}
    assert servers["gone"]["state"] == "down" and servers["gone"]["tools"] == 0
    assert [t["function"]["name"] for t in info["tools"]] == ["echo"]
    assert "MCP server 'gone' (streamable-http) is unavailable" in served.log.read_text()


async def test_the_mcp_client_uses_the_agent_at_its_mcp_path(served):
    async with Client(f"{served.url}/clock/mcp") as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"echo", "chat"}
        echoed = await client.call_tool("echo", {"text": "through two servers"})
        assert echoed.content[0].text == "echo: through two servers"
        chat = await client.call_tool("chat", {"message": "hi"})
        assert chat.content[0].text == ANSWER


def test_a_stdio_server_does_not_outlive_a_killed_robutler_serve(tmp_path):
    server = Served(agents_file(tmp_path), tmp_path / "serve.log")
    children = psutil.Process(server.process.pid).children(recursive=True)
    echo = [p for p in children if str(ECHO_SERVER) in " ".join(p.cmdline())]
    assert len(echo) == 1
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    gone, alive = psutil.wait_procs(echo, timeout=10)
    assert alive == []
