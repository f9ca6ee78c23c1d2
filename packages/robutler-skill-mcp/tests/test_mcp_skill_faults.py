"""Faults: a tool past its timeout, a stdio server killed between requests, a server down at
start-up (and coming up later), and no stdio process left after shutdown."""

import asyncio
import os
import signal
import threading
import time

import psutil
import uvicorn
from mcp_echo_server import build, stdio_server

from robutler_core import Agent
from robutler_server.testing import free_port
from robutler_skill_mcp import MCPSkill


def context(agent, **headers):
    return agent.new_context([], None, False, headers=headers)


async def started(servers):
    agent = Agent("a", model="test", skills={"mcp": MCPSkill({"servers": servers})})
    await agent.initialize()
    return agent


async def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_call_past_the_timeout_is_cancelled_and_answered_with_an_error_in_about_the_timeout():
    agent = await started({"slow": stdio_server("hang,echo", timeout=1)})
    try:
        started_at = time.monotonic()
        result = await agent.call_tool("hang", {"seconds": 30}, context(agent))
        elapsed = time.monotonic() - started_at
        assert result.is_error
        assert "ToolCallTimeout: MCP server 'slow' did not answer tool 'hang' within 1 s; the call was cancelled" in result.content
        assert 0.9 < elapsed < 2.5
        # the shared session still works
        assert await agent.call_tool("echo", {"text": "still here"}, context(agent)) == ("echo: still here", False)
    finally:
        await agent.close()


async def test_a_stdio_server_killed_between_requests_is_restarted_on_the_next_call():
    agent = await started({"echo": stdio_server("echo,pid")})
    connection = agent.skills["mcp"].connections["echo"]
    try:
        first = int((await agent.call_tool("pid", {}, context(agent))).content)
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: connection.state == "down")
        assert agent.info()["status"]["mcp"]["servers"]["echo"]["state"] == "down"
        assert {t.name for t in agent.tools_for_scope("all")} == {"echo", "pid"}  # kept, to restart on call
        assert await agent.call_tool("echo", {"text": "back"}, context(agent)) == ("echo: back", False)
        second = int((await agent.call_tool("pid", {}, context(agent))).content)
        assert second != first and connection.state == "connected"
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
    finally:
        await agent.close()
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE


async def test_a_server_down_at_start_up_leaves_its_tools_out_and_the_agent_serving_until_it_comes_up():
    port = free_port()
    agent = await started({"remote": {"url": f"http://127.0.0.1:{port}/mcp", "prefix": "r_", "connect_timeout": 2},
                           "local": stdio_server("echo")})
    try:
        assert {t.name for t in agent.tools_for_scope("all")} == {"echo"}
        status = agent.info("owner")["status"]["mcp"]["servers"]["remote"]
        assert status["state"] == "down" and status["tools"] == 0 and status["transport"] == "streamable-http"
        assert "ConnectError" in status["error"]
        assert "error" not in agent.info("all")["status"]["mcp"]["servers"]["remote"]  # details for the owner only
        completion = await agent.run([{"role": "user", "content": "hi"}])
        assert completion["choices"][0]["message"]["content"] == "Tool results: echo returned echo: a"

        late = LateServer(port)  # the server comes up on that port: the background retry finds it
        late.start()
        try:
            await wait_for(lambda: "r_echo" in {t.name for t in agent.tools_for_scope("all")}, seconds=15)
            assert await agent.call_tool("r_echo", {"text": "late"}, context(agent)) == ("echo: late", False)
        finally:
            await late.stop()
    finally:
        await agent.close()


async def test_a_stdio_server_that_cannot_start_is_reported_and_the_others_serve():
    agent = await started({"missing": {"command": "/nonexistent/mcp-server"}, "local": stdio_server("echo")})
    try:
        status = agent.info("owner")["status"]["mcp"]["servers"]
        assert status["missing"]["state"] == "down" and status["local"]["state"] == "connected"
        assert await agent.call_tool("echo", {"text": "x"}, context(agent)) == ("echo: x", False)
    finally:
        await agent.close()


async def test_shutdown_leaves_no_stdio_process():
    agent = await started({"a": stdio_server("pid", prefix="a_"), "b": stdio_server("pid", prefix="b_")})
    pids = [int((await agent.call_tool(name, {}, context(agent))).content) for name in ("a_pid", "b_pid")]
    assert all(psutil.pid_exists(pid) for pid in pids)
    await agent.close()
    assert all(not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE for pid in pids)
    assert agent.info()["status"]["mcp"]["servers"]["a"]["state"] == "closed"
    assert agent.tools_for_scope("admin") == []


class LateServer:
    """The echo server over Streamable HTTP on a fixed port, started and stopped at will."""

    def __init__(self, port):
        self.port = port
        self.server = self.thread = None

    def start(self):
        config = uvicorn.Config(build("late").streamable_http_app(), host="127.0.0.1", port=self.port,
                                log_level="warning", timeout_graceful_shutdown=0.5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    async def stop(self):
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, 10)


async def test_a_remote_server_that_goes_away_is_reconnected_on_a_later_call():
    remote = LateServer(free_port())
    remote.start()
    agent = await started({"remote": {"url": f"http://127.0.0.1:{remote.port}/mcp"}})
    try:
        assert await agent.call_tool("echo", {"text": "1"}, context(agent)) == ("echo: 1", False)
        await remote.stop()
        failed = await agent.call_tool("echo", {"text": "2"}, context(agent))
        assert failed.is_error and "ServerUnavailable: MCP server 'remote'" in failed.content
        assert agent.info()["status"]["mcp"]["servers"]["remote"]["state"] == "down"
        remote.start()
        assert await agent.call_tool("echo", {"text": "3"}, context(agent)) == ("echo: 3", False)
        assert agent.info()["status"]["mcp"]["servers"]["remote"]["state"] == "connected"
    finally:
        await agent.close()
        await remote.stop()


async def test_faults_in_a_chat_completion_are_tool_results_and_the_request_ends_in_about_the_timeout():
    from robutler_core.testing import ScriptedModel, finish_chunks, text_chunks, tool_call_chunks

    model = ScriptedModel([
        tool_call_chunks([("hang", {"seconds": 30}), ("explode", {}), ("echo", {"text": "fine"})])
        + finish_chunks("tool_calls"),
        text_chunks("done") + finish_chunks("stop"),
    ])
    # the timeout is per server: the hanging tool's is 1 s; the other server's leaves time for
    # the SDK server's first traceback log (rich renders it in seconds, blocking that server)
    servers = {"slow": stdio_server("hang", timeout=1), "s": stdio_server("explode,echo", timeout=10)}
    agent = Agent("a", model=model, skills={"mcp": MCPSkill({"servers": servers})})
    await agent.initialize()
    try:
        started_at = time.monotonic()
        completion = await agent.run([{"role": "user", "content": "go"}])
        assert 0.9 < time.monotonic() - started_at < 3
        assert completion["choices"][0]["message"]["content"] == "done"
        results = [m["content"] for m in model.calls[1][0] if m["role"] == "tool"]
        assert "ToolCallTimeout" in results[0] and "within 1 s" in results[0]
        assert "MCPToolError: Error executing tool explode" in results[1]
        assert results[2] == "echo: fine"
    finally:
        await agent.close()


async def test_a_stdio_server_that_does_not_come_back_loses_its_tools_until_it_does(tmp_path):
    refuse = tmp_path / "refuse"
    agent = await started({"echo": stdio_server("echo,pid", env={"MCP_ECHO_REFUSE_IF_EXISTS": str(refuse)})})
    connection = agent.skills["mcp"].connections["echo"]
    try:
        pid = int((await agent.call_tool("pid", {}, context(agent))).content)
        refuse.touch()
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: connection.state == "down")
        failed = await agent.call_tool("echo", {"text": "x"}, context(agent))
        assert failed.is_error and "ServerUnavailable: MCP server 'echo' is down:" in failed.content
        assert agent.tools_for_scope("all") == []  # dropped: the model is not offered a dead server
        status = agent.info("owner")["status"]["mcp"]["servers"]["echo"]
        assert status["state"] == "down" and 0 < status["retry_in"] <= 1.0
        refuse.unlink()  # it can start again: the background retry brings its tools back
        await wait_for(lambda: {t.name for t in agent.tools_for_scope("all")} == {"echo", "pid"}, seconds=15)
        assert await agent.call_tool("echo", {"text": "back"}, context(agent)) == ("echo: back", False)
    finally:
        await agent.close()
