"""The mcp skill against real servers: mcp-server-time and mcp-server-git over stdio, the SDK's
MCPServer over stdio, Streamable HTTP and SSE."""

import asyncio
import json
import subprocess
import sys

import pytest
from mcp_echo_server import stdio_server

from robutler_core import Agent
from robutler_core.errors import ConfigurationError
from robutler_skill_mcp import MCPSkill


def context(agent, **headers):
    return agent.new_context([], None, False, headers=headers)


async def started(servers, **agent_options):
    agent = Agent("a", model="test", skills={"mcp": MCPSkill({"servers": servers})}, **agent_options)
    await agent.initialize()
    return agent


async def test_mcp_server_time_over_stdio_its_schema_unchanged_and_arguments_checked():
    agent = await started({"time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}})
    try:
        tools = {t.name: t for t in agent.tools_for_scope("all")}
        assert {"get_current_time", "convert_time"} <= set(tools)
        mcp_tools = {t.name: t for t in agent.skills["mcp"].connections["time"].tools}
        assert tools["get_current_time"].parameters == mcp_tools["get_current_time"].input_schema
        assert tools["get_current_time"].description == mcp_tools["get_current_time"].description

        result = await agent.call_tool("get_current_time", {"timezone": "Asia/Tokyo"}, context(agent))
        assert not result.is_error
        assert json.loads(result.content)["timezone"] == "Asia/Tokyo"

        bad = await agent.call_tool("get_current_time", {"zone": "UTC"}, context(agent))
        assert bad.is_error
        assert bad.content == "Error: invalid arguments for tool 'get_current_time': $: 'timezone' is a required property"
        wrong_type = await agent.call_tool("get_current_time", {"timezone": 5}, context(agent))
        assert wrong_type.content == "Error: invalid arguments for tool 'get_current_time': $.timezone: 5 is not of type 'string'"
    finally:
        await agent.close()


async def test_mcp_server_git_over_stdio(tmp_path):
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    (tmp_path / "notes.txt").write_text("hello\n")
    agent = await started({"git": {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(tmp_path)],
                                   "prefix": "repo_"}})
    try:
        assert "repo_git_status" in {t.name for t in agent.tools_for_scope("all")}
        result = await agent.call_tool("repo_git_status", {"repo_path": str(tmp_path)}, context(agent))
        assert not result.is_error, result.content
        assert "notes.txt" in result.content and "main" in result.content
    finally:
        await agent.close()


@pytest.fixture(params=["stdio", "streamable-http", "sse"])
def echo_config(request, http_server_url, sse_server_url):
    if request.param == "stdio":
        return stdio_server()
    if request.param == "sse":
        return {"url": sse_server_url, "transport": "sse"}
    return {"url": http_server_url}


async def test_results_of_each_kind_over_each_transport(echo_config):
    agent = await started({"echo": {**echo_config, "prefix": "e_"}})
    try:
        status = agent.info()["status"]["mcp"]["servers"]["echo"]
        assert status["state"] == "connected" and status["tools"] >= 7
        assert await agent.call_tool("e_echo", {"text": "hi"}, context(agent)) == ("echo: hi", False)
        assert await agent.call_tool("e_picture", {}, context(agent)) == (
            "[image: image/png, 5 bytes]\n[resource: file:///tmp/report.pdf (report, application/pdf)]", False
        )
        assert await agent.call_tool("e_measure", {}, context(agent)) == ('{"celsius": 21.5}', False)
        failed = await agent.call_tool("e_explode", {}, context(agent))
        assert failed.is_error and "MCPToolError: Error executing tool explode" in failed.content
        # the session survives a failing tool
        assert await agent.call_tool("e_echo", {"text": "again"}, context(agent)) == ("echo: again", False)
    finally:
        await agent.close()


async def test_the_tool_list_refreshes_on_tools_list_changed(echo_config):
    agent = await started({"echo": echo_config})
    try:
        assert "added" not in {t.name for t in agent.tools_for_scope("all")}
        assert await agent.call_tool("grow", {}, context(agent)) == ("grown", False)
        for _ in range(100):
            if "added" in {t.name for t in agent.tools_for_scope("all")}:
                break
            await asyncio.sleep(0.05)
        assert await agent.call_tool("added", {}, context(agent)) == ("I was added", False)
    finally:
        await agent.close()


async def test_the_model_calls_an_mcp_tool_and_the_answer_carries_its_result():
    # the server offers only echo: the test model calls every tool it is offered
    only_echo = Agent("b", model="test", skills={"mcp": MCPSkill({"servers": {"echo": stdio_server("echo")}})})
    await only_echo.initialize()
    try:
        completion = await only_echo.run([{"role": "user", "content": "say a"}])
        assert completion["choices"][0]["message"]["content"] == "Tool results: echo returned echo: a"
    finally:
        await only_echo.close()


async def test_two_servers_offering_one_name_without_prefixes_is_a_configuration_error():
    agent = Agent("a", model="test", skills={"mcp": MCPSkill({"servers": {
        "one": stdio_server("echo,pid"),
        "two": stdio_server("echo"),
    }})})
    with pytest.raises(ConfigurationError) as caught:
        await agent.initialize()
    assert caught.value.message == "MCP servers 'one' and 'two' both offer a tool named 'echo': give one of them a 'prefix'"
    assert agent.skills["mcp"].connections["one"].state == "closed"


async def test_a_servers_scope_applies_to_its_tools_when_they_run():
    agent = await started({"echo": stdio_server("echo", scope="owner")},
                          hooks={"on_connection": [lambda context: context.set("auth_scope", context.headers.get("x-scope", "all"))]})
    try:
        assert agent.tools_for_scope("all") == []
        refused = await agent.call_tool("echo", {"text": "x"}, context(agent))
        assert refused.is_error and "there is no tool named 'echo'" in refused.content
        assert await agent.call_tool("echo", {"text": "x"}, context(agent, **{"x-scope": "owner"})) == ("echo: x", False)
    finally:
        await agent.close()


@pytest.mark.parametrize("config, problem", [
    ({"servers": {"x": {}}}, "give either 'command' (stdio) or 'url'"),
    ({"servers": {"x": {"command": "a", "url": "http://h"}}}, "give either 'command' (stdio) or 'url'"),
    ({"servers": {"x": {"command": "a", "headers": {"a": "b"}}}}, "headers: only with 'url'"),
    ({"servers": {"x": {"url": "http://h", "args": ["a"]}}}, "args: only with 'command'"),
    ({"servers": {"x": {"url": "ftp://h"}}}, "url must start with http:// or https://"),
    ({"servers": {"x": {"url": "http://h", "transport": "websocket"}}}, "option 'servers.x.transport'"),
    ({"servers": {"x": {"command": "a", "timeout": 0}}}, "option 'servers.x.timeout'"),
    ({"servers": {"x": {"command": "a", "tiemout": 3}}}, "option 'servers.x.tiemout': unknown option"),
    ({"servers": {"bad name": {"command": "a"}}}, "servers.bad name"),
    ({"server": {}}, "option 'server': unknown option"),
])
def test_bad_configuration_is_refused_naming_the_option(config, problem):
    with pytest.raises(ConfigurationError) as caught:
        MCPSkill(config)
    assert caught.value.message.startswith("MCPSkill: invalid config:")
    assert problem in caught.value.message


async def test_a_handshake_era_session_refreshes_on_the_tools_list_changed_notification(http_server_url):
    """Servers of the initialize handshake send notifications/tools/list_changed on the session
    itself (2026-07-28 servers send it on a subscriptions/listen stream, tested above)."""
    from robutler_skill_mcp.config import ServerConfig
    from robutler_skill_mcp.connection import ServerConnection

    changes = []
    connection = ServerConnection("legacy", ServerConfig(url=http_server_url),
                                  lambda c: changes.append(sorted(t.name for t in c.tools)), mode="legacy")
    assert await connection.start()
    try:
        assert connection._client.protocol_version in ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
        assert (await connection.call_tool("grow", {})).content[0].text == "grown"
        for _ in range(100):
            if "added" in changes[-1]:
                break
            await asyncio.sleep(0.05)
        assert "added" in changes[-1]
    finally:
        await connection.close()
