"""Every agent as an MCP server at /{agent}/mcp: the official mcp client lists its tools, calls
one and chat, with the agent's request lifecycle and the caller's scope."""

import asyncio

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from robutler_core import Agent, Skill, hook, tool
from robutler_core.errors import AuthenticationError
from robutler_server import create_app
from robutler_server.testing import serve_in_thread


class Guarded(Skill):
    """Bearer 'owner-token' makes the caller owner; 'bad' is refused. Records the lifecycle."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    @hook("on_connection")
    def authenticate(self, context):
        token = context.headers.get("authorization")
        if token == "Bearer bad":
            raise AuthenticationError("invalid token")
        if token == "Bearer owner-token":
            context.auth_scope = "owner"

    @hook("before_toolcall")
    def before(self, context, tool_call):
        self.log.append(("before", tool_call["function"]["name"]))
        return tool_call

    @hook("after_toolcall")
    def after(self, context, tool_call, result):
        self.log.append(("after", result))
        return result

    @hook("finalize_connection")
    def finalize(self, context):
        self.log.append(("finalize", [r.reason for r in context.usage_records]))

    @tool
    def add(self, a: int, b: int, context=None) -> int:
        """Add two integers."""
        context.track_usage(1, "add")
        return a + b

    @tool(scope="owner")
    def vault(self) -> str:
        """The owner's secret."""
        return "the owner's secret"


@pytest.fixture(scope="module")
def served():
    log = []
    agent = Agent("assistant", instructions="Be brief.", model="test", skills={"guard": Guarded(log)})
    with serve_in_thread(create_app([agent])) as url:
        yield f"{url}/assistant/mcp", log


async def call(url, action, token=None, **client_options):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx2.AsyncClient(headers=headers) as http:
        async with Client(streamable_http_client(url, http_client=http), **client_options) as client:
            try:
                return await action(client)
            except MCPError as error:  # returned: raised, the client's task groups would wrap it
                return error


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_mcp_client_lists_tools_and_calls_one_and_chat(served, mode):
    url, log = served

    async def session(client):
        tools = (await client.list_tools()).tools
        added = await client.call_tool("add", {"a": 2, "b": 40})
        chat = await client.call_tool("chat", {"message": "hello"})
        return tools, added, chat

    tools, added, chat = await call(url, session, mode=mode)
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"add", "chat"}  # no owner tool for an anonymous caller
    assert by_name["add"].input_schema["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert by_name["add"].description == "Add two integers."
    assert by_name["chat"].input_schema["required"] == ["message"]
    assert (added.content[0].text, added.is_error) == ("42", False)
    assert chat.content[0].text == "Tool results: add returned 2" and not chat.is_error


async def test_owner_tools_only_with_owner_credentials(served):
    url, _ = served

    async def session(client):
        names = {t.name for t in (await client.list_tools()).tools}
        return names, await client.call_tool("vault", {})

    names, result = await call(url, session)
    assert "vault" not in names
    assert result.is_error and "there is no tool named 'vault'" in result.content[0].text
    names, result = await call(url, session, token="owner-token")
    assert {"add", "vault", "chat"} == names
    assert (result.content[0].text, result.is_error) == ("the owner's secret", False)


async def test_a_call_runs_the_request_lifecycle_once(served):
    url, log = served
    log.clear()
    await call(url, lambda client: client.call_tool("add", {"a": 1, "b": 1}))
    # the tools/call request: hooks around the tool, its usage, finalize_connection once; the
    # client may also list the tools (to check the result), a request of its own
    assert log[:3] == [("before", "add"), ("after", "2"), ("finalize", ["add"])]
    assert all(entry == ("finalize", []) for entry in log[3:])


async def test_bad_arguments_and_refused_credentials(served):
    url, _ = served
    bad = await call(url, lambda client: client.call_tool("add", {"a": "one"}))
    assert bad.is_error and "invalid arguments for tool 'add'" in bad.content[0].text
    chat = await call(url, lambda client: client.call_tool("chat", {"text": "hi"}))
    assert chat.is_error and chat.content[0].text == "Error: chat takes one argument, 'message', a string"
    for action in (lambda client: client.list_tools(), lambda client: client.call_tool("chat", {"message": "hi"}),
                   lambda client: client.call_tool("add", {"a": 1, "b": 2})):
        refused = await call(url, action, token="bad")
        assert isinstance(refused, MCPError) and refused.error.message == "401 invalid token"
        assert refused.error.data == {"status": 401, "type": "authentication_error"}


async def test_concurrent_calls_share_nothing(served):
    url, _ = served

    async def session(client):
        return await asyncio.gather(*(client.call_tool("add", {"a": i, "b": i}) for i in range(20)))

    results = await call(url, session)
    assert [r.content[0].text for r in results] == [str(2 * i) for i in range(20)]


async def test_the_mcp_route_answers_503_outside_the_apps_lifespan_and_works_again_after_a_restart():
    import httpx

    app = create_app([Agent("solo", model="test")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/solo/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "the MCP server is not running (the app's lifespan has not started)"
    for _ in range(2):  # the lifespan runs twice: each run has its own session managers
        with serve_in_thread(app) as url:
            names = await call(f"{url}/solo/mcp", lambda client: client.list_tools())
            assert [t.name for t in names.tools] == ["chat"]


def test_serving_imports_the_mcp_sdk_only_at_the_first_mcp_request():
    """create_app with the installed plugins (this package's register_routes among them) does
    not import the SDK; the first request to /{agent}/mcp does, and is answered in full."""
    import subprocess
    import sys

    code = (
        "import sys, json, urllib.request\n"
        "from robutler_core import Agent\n"
        "from robutler_server import create_app\n"
        "from robutler_server.testing import serve_in_thread\n"
        "app = create_app([Agent('solo', model='test')])\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')})\n"
        "print(loaded())\n"
        "with serve_in_thread(app) as url:\n"
        "    urllib.request.urlopen(url + '/health').read()\n"
        "    print(loaded())\n"
        "    request = urllib.request.Request(url + '/solo/mcp', method='POST', data=json.dumps(\n"
        "        {'jsonrpc': '2.0', 'id': 1, 'method': 'tools/list', 'params': {}}).encode(),\n"
        "        headers={'content-type': 'application/json', 'accept': 'application/json, text/event-stream',\n"
        "                 'mcp-protocol-version': '2025-06-18'})\n"
        "    body = urllib.request.urlopen(request).read().decode()\n"
        "    print(loaded(), 'chat' in body)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["[]", "[]", "['mcp', 'mcp_types'] True"]


async def test_concurrent_first_requests_to_two_agents_are_all_answered():
    app = create_app([Agent("solo", model="test"), Agent("duo", model="test")])
    with serve_in_thread(app) as url:
        results = await asyncio.gather(*(
            call(f"{url}/{name}/mcp", lambda client: client.list_tools()) for name in ("solo", "duo") * 4
        ))
    assert [sorted(t.name for t in r.tools) for r in results] == [["chat"]] * 8


# --- agents that arrive after start-up ----------------------------------------------------------


class Adder(Skill):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


class Doubler(Skill):
    @tool
    def double(self, x: int) -> int:
        """Double an integer."""
        return 2 * x


def _plugins(*others):
    import robutler_skill_mcp
    from robutler_core.plugins import get_plugin_manager

    pm = get_plugin_manager(load_entry_points=False)
    pm.register(robutler_skill_mcp, name="robutler_skill_mcp")
    for index, plugin in enumerate(others):
        pm.register(plugin, name=f"plugin{index}")
    return pm


async def test_an_agent_a_resolve_agent_hook_finds_is_served_over_mcp():
    import httpx
    from robutler_core import hookimpl

    class Tenants:
        @hookimpl
        def resolve_agent(self, name):
            return Agent(name, model="test", skills={"adder": Adder()}) if name.startswith("tenant-") else None

    app = create_app([Agent("static", model="test")], plugins=_plugins(Tenants()))
    with serve_in_thread(app) as url:
        result = await call(f"{url}/tenant-a/mcp", lambda client: client.call_tool("add", {"a": 20, "b": 22}))
        assert (result.content[0].text, result.is_error) == ("42", False)
        static = await call(f"{url}/static/mcp", lambda client: client.list_tools())
        assert [t.name for t in static.tools] == ["chat"]
        async with httpx.AsyncClient() as http:
            missing = await http.post(f"{url}/nobody/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "agent_not_found"


async def test_a_reloaded_agents_file_is_served_over_mcp(tmp_path):
    import os
    import time

    from robutler_core.plugins import SkillRegistry, get_plugin_manager
    from robutler_server.config import load_agents_file

    registry = SkillRegistry.from_plugin_manager(get_plugin_manager(load_entry_points=False))
    registry.add(Adder, name="adder")
    registry.add(Doubler, name="doubler")
    agents_file = tmp_path / "agents.yaml"

    def write(text):
        (tmp_path / "new.yaml").write_text(text)
        os.replace(tmp_path / "new.yaml", agents_file)

    write("agents:\n  - name: first\n    model: test\n    skills: {adder: {}}\n")
    app = create_app(load_agents_file(agents_file, registry).agents, registry=registry,
                     reload_agents_file=agents_file, plugins=_plugins())

    async def names(url, agent):
        return sorted(t.name for t in (await call(f"{url}/{agent}/mcp", lambda client: client.list_tools())).tools)

    with serve_in_thread(app) as url:
        assert await names(url, "first") == ["add", "chat"]
        await asyncio.sleep(0.3)  # the watcher has started
        write("agents:\n  - name: first\n    model: test\n    skills: {doubler: {}}\n"
              "  - name: second\n    model: test\n    skills: {adder: {}}\n")
        deadline = time.monotonic() + 15
        while [m.name for m in app.state.agents.values()] != ["first", "second"]:
            assert time.monotonic() < deadline, "the agents file was not reloaded"
            await asyncio.sleep(0.05)
        assert await names(url, "first") == ["chat", "double"]  # the new 'first', not the one replaced
        assert await names(url, "second") == ["add", "chat"]
        doubled = await call(f"{url}/first/mcp", lambda client: client.call_tool("double", {"x": 21}))
        assert doubled.content[0].text == "42"
