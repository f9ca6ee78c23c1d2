"""Dynamic agents: a plugin's ``resolve_agent`` hook serves agents the agents file does not
declare, cached with a TTL and a bound; over real uvicorn."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time
import types

import httpx
import pytest

from robutler_core import Agent, Skill, hookimpl, http
from robutler_core.plugins import get_plugin_manager
from robutler_server import create_app
from robutler_server.config import ServerConfig
from robutler_server.testing import serve_in_thread

USER = [{"role": "user", "content": "hi"}]


class Tenants:
    """A fixture plugin: agents ``tenant-*`` from a 'database' (a dict), looked up async."""

    def __init__(self):
        self.lookups: list[str] = []
        self.closed: list[str] = []
        self.fail = False

    @hookimpl
    async def resolve_agent(self, name):
        self.lookups.append(name)
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("the tenants database is down")
        if not name.startswith("tenant-"):
            return None
        agent = Agent(name, f"You serve {name}.", model="test")
        closed = self.closed
        original_close = agent.close

        async def close():
            closed.append(name)
            await original_close()

        agent.close = close
        return agent


def plugins_with(*plugins):
    pm = get_plugin_manager(load_entry_points=False)
    for index, plugin in enumerate(plugins):
        pm.register(plugin, name=f"plugin{index}")
    return pm


def test_a_resolved_agent_is_served_on_every_route_and_cached():
    tenants = Tenants()
    app = create_app([Agent("static", model="test")], plugins=plugins_with(tenants))
    with serve_in_thread(app) as base:
        response = httpx.post(f"{base}/tenant-a/chat/completions", json={"messages": USER})
        assert response.status_code == 200
        assert response.json()["model"] == "tenant-a"
        response = httpx.post(f"{base}/v1/chat/completions", json={"model": "tenant-a", "messages": USER})
        assert response.status_code == 200
        response = httpx.post(f"{base}/v1/responses", json={"model": "tenant-b", "input": "hi"})
        assert response.status_code == 200 and response.json()["model"] == "tenant-b"
        assert httpx.get(f"{base}/tenant-c").json()["name"] == "tenant-c"
        assert httpx.get(f"{base}/v1/models/tenant-d").json()["id"] == "tenant-d"
        assert tenants.lookups == ["tenant-a", "tenant-b", "tenant-c", "tenant-d"]  # each once
        # The agents file's agents are never looked up; unknown names are 404 (and remembered).
        assert httpx.post(f"{base}/static/chat/completions", json={"messages": USER}).status_code == 200
        for _ in range(2):
            missing = httpx.post(f"{base}/nobody/chat/completions", json={"messages": USER})
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "agent_not_found"
        assert tenants.lookups.count("nobody") == 1
        assert "static" not in tenants.lookups
    assert sorted(tenants.closed) == ["tenant-a", "tenant-b", "tenant-c", "tenant-d"]  # closed at shutdown


def test_the_cache_expires_and_is_bounded():
    tenants = Tenants()
    app = create_app([Agent("static", model="test")], plugins=plugins_with(tenants),
                     server=ServerConfig(agent_cache_ttl=0.5, agent_cache_size=2))
    with serve_in_thread(app) as base:
        for name in ("tenant-a", "tenant-b", "tenant-c"):
            assert httpx.post(f"{base}/{name}/chat/completions", json={"messages": USER}).status_code == 200
        deadline = time.monotonic() + 5
        while "tenant-a" not in tenants.closed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tenants.closed == ["tenant-a"]  # the least recently used left the bounded cache
        assert httpx.post(f"{base}/tenant-c/chat/completions", json={"messages": USER}).status_code == 200
        assert tenants.lookups.count("tenant-c") == 1
        time.sleep(0.6)
        assert httpx.post(f"{base}/tenant-c/chat/completions", json={"messages": USER}).status_code == 200
        assert tenants.lookups.count("tenant-c") == 2  # looked up again after the TTL


def test_a_failing_directory_is_503_and_a_wrong_answer_too():
    tenants = Tenants()
    tenants.fail = True
    wrong = types.SimpleNamespace(resolve_agent=hookimpl(lambda name: Agent("someone-else", model="test") if name == "odd" else None))
    app = create_app([Agent("static", model="test")], plugins=plugins_with(wrong, tenants))
    with serve_in_thread(app) as base:
        response = httpx.post(f"{base}/tenant-a/chat/completions", json={"messages": USER})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "agent_directory_unavailable"
        tenants.fail = False
        assert httpx.post(f"{base}/tenant-a/chat/completions", json={"messages": USER}).status_code == 200
        assert httpx.post(f"{base}/odd/chat/completions", json={"messages": USER}).status_code == 503


def test_without_a_resolver_unknown_agents_are_404():
    app = create_app([Agent("static", model="test")], plugins=plugins_with())
    assert not app.state.dynamic_agents.impls
    with serve_in_thread(app) as base:
        assert httpx.post(f"{base}/tenant-a/chat/completions", json={"messages": USER}).status_code == 404


def test_a_resolver_installed_through_an_entry_point_serves_robutler_serve(tmp_path):
    """A distribution (a .dist-info with an entry point in the ``robutler`` group) whose module
    implements resolve_agent: ``robutler serve`` serves its agents."""
    (tmp_path / "robutler_fixture_tenants.py").write_text(textwrap.dedent('''
        from robutler_core import Agent, hookimpl

        @hookimpl
        def resolve_agent(name):
            return Agent(name, "A tenant.", model="test") if name.startswith("tenant-") else None
    '''))
    info = tmp_path / "robutler_fixture_tenants-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robutler-fixture-tenants\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[robutler]\ntenants = robutler_fixture_tenants\n")
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text("agents:\n  - name: static\n    model: test\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("ROBUTLER_LOAD_PLUGINS", None)
    process = subprocess.Popen(
        [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", str(agents_file), "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        base = _wait_for_address(process)
        response = httpx.post(f"{base}/tenant-x/chat/completions", json={"messages": USER}, timeout=30)
        assert response.status_code == 200
        assert response.json()["model"] == "tenant-x"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_for_address(process: subprocess.Popen) -> str:
    """The server's address, from its log line ``bound http://...``, once it answers."""
    deadline = time.monotonic() + 30
    base = None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            pytest.fail(f"robutler serve exited with {process.returncode}")
        found = re.search(r"bound (http://\S+?:\d+)", line)
        if found:
            base = found.group(1)
            break
    assert base, "no bound address logged"
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return base
        except httpx.HTTPError:
            time.sleep(0.05)
    pytest.fail("robutler serve did not answer")


# --- robutler serve --reload-agents ---------------------------------------------------------------

SLOW_SKILL = '''
import asyncio

from robutler_core import Skill, hookimpl, tool


class SlowSkill(Skill):
    """A tool that takes ``seconds`` (config)."""

    @tool
    async def take_time(self) -> str:
        """Takes a while."""
        await asyncio.sleep(float(self.config.get("seconds", 1)))
        return "took its time"


@hookimpl
def register_skills(register):
    register(SlowSkill, name="slow")
'''


class Served:
    """``robutler serve`` in a subprocess, its stderr collected line by line."""

    def __init__(self, tmp_path, *arguments):
        (tmp_path / "robutler_fixture_slow.py").write_text(SLOW_SKILL)
        info = tmp_path / "robutler_fixture_slow-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robutler-fixture-slow\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[robutler]\nslow = robutler_fixture_slow\n")
        env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env.pop("ROBUTLER_LOAD_PLUGINS", None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", *arguments, "--port", "0"],
            stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines: list[str] = []
        self.base = _wait_for_address(self.process)
        import threading

        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_log(self, text, count=1, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line for line in self.lines) >= count:
                return
            time.sleep(0.05)
        pytest.fail(f"no log line with {text!r} (x{count}) in:\n{''.join(self.lines)}")

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=20)


def write(path, text):
    """Replace the file as editors do: write a new one and rename it over the old."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_reload_agents_serves_the_new_file_without_dropping_requests_and_refuses_a_bad_one(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    agents_file = tmp_path / "agents.yaml"
    write(agents_file, "agents:\n  - name: first\n    model: test\n    skills: {slow: {seconds: 2}}\n")
    served = Served(tmp_path, str(agents_file), "--reload-agents")
    try:
        base = served.base
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(httpx.post, f"{base}/first/chat/completions", json={"messages": USER}, timeout=30)
            time.sleep(0.5)  # the request is in its slow tool
            write(agents_file, "agents:\n  - name: second\n    model: test\n    rate_limit: 1/minute\n")
            served.wait_for_log("reloaded: serving second")
            assert httpx.post(f"{base}/second/chat/completions", json={"messages": USER}).status_code == 200
            assert httpx.post(f"{base}/second/chat/completions", json={"messages": USER}).status_code == 429
            assert httpx.post(f"{base}/first/chat/completions", json={"messages": USER}).status_code == 404
            assert [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]] == ["second"]
            finished = running.result(timeout=30)  # the request that was running went on
            assert finished.status_code == 200
            assert "took its time" in finished.json()["choices"][0]["message"]["content"]

        write(agents_file, "agents:\n  - name: third\n    model: test\n    skills: {nonexistent: {}}\n")
        served.wait_for_log("agents file refused")
        assert any("nonexistent" in line for line in served.lines if "refused" in line)
        write(agents_file, "agents: [unclosed\n")
        served.wait_for_log("agents file refused", count=2)
        assert httpx.get(f"{base}/v1/models").json()["data"][0]["id"] == "second"  # still served
        assert httpx.get(f"{base}/third").status_code == 404
    finally:
        served.close()
    assert served.process.returncode == 0


def test_sighup_reloads_the_agents_file(tmp_path):
    import signal

    agents_file = tmp_path / "agents.yaml"
    write(agents_file, "agents:\n  - name: first\n    model: test\n")
    served = Served(tmp_path, str(agents_file), "--reload-agents")
    try:
        time.sleep(0.5)  # the watcher has started
        served.process.send_signal(signal.SIGHUP)
        served.wait_for_log("reloaded: serving first")
        assert httpx.post(f"{served.base}/first/chat/completions", json={"messages": USER}).status_code == 200
    finally:
        served.close()
    assert served.process.returncode == 0


def test_reload_agents_needs_an_agents_file():
    from click.testing import CliRunner

    from robutler_server.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--reload-agents"])
    assert result.exit_code == 1
    assert "--reload-agents needs an AGENTS_FILE" in result.output


def test_the_body_limit_applies_before_the_v1_routes_read_the_model():
    tenants = Tenants()
    app = create_app([Agent("static", model="test")], plugins=plugins_with(tenants),
                     server=ServerConfig(max_body_bytes=500))

    def chunks():
        for _ in range(4):
            yield b'{"model": "tenant-a", "messages": []}' * 5

    with serve_in_thread(app) as base:
        response = httpx.post(f"{base}/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert "500 bytes" in response.json()["error"]["message"]
        assert tenants.lookups == []


# --- @http handlers of agents that arrive after start-up -------------------------------------------


class Greeter(Skill):
    """An @http handler: GET /{agent}/hello?name=... greets with the configured greeting."""

    @http("/hello")
    def hello(self, name: str = "world") -> dict:
        return {"greeting": f"{self.config.get('greeting', 'hello')}, {name}"}


class Unreadable(Skill):
    @http("/broken")
    def broken(self, item: "NoSuchType") -> dict:  # noqa: F821 - the hint cannot be resolved
        return {}


class GreetingTenants:
    """resolve_agent: ``tenant-*`` agents with a Greeter greeting with their own name; ``bad-*``
    agents with an @http handler whose type hints cannot be read."""

    @hookimpl
    def resolve_agent(self, name):
        if name.startswith("tenant-"):
            return Agent(name, model="test", skills={"greeter": Greeter({"greeting": name})})
        if name.startswith("bad-"):
            return Agent(name, model="test", skills={"unreadable": Unreadable()})
        return None


def test_a_resolved_agents_http_handlers_are_served():
    app = create_app([Agent("static", model="test")], plugins=plugins_with(GreetingTenants()))
    with serve_in_thread(app) as base:
        response = httpx.get(f"{base}/tenant-a/hello", params={"name": "bo"})
        assert response.status_code == 200 and response.json() == {"greeting": "tenant-a, bo"}
        assert httpx.get(f"{base}/tenant-b/hello").json() == {"greeting": "tenant-b, world"}
        assert httpx.post(f"{base}/tenant-a/hello").status_code == 405
        assert httpx.get(f"{base}/tenant-a/nothing").status_code == 404
        assert httpx.get(f"{base}/tenant-a/models").json()["data"][0]["id"] == "tenant-a"  # generic routes too
        assert httpx.get(f"{base}/nobody/hello").status_code == 404
        assert httpx.get(f"{base}/static/hello").status_code == 404  # another agent's handler is not its own
        broken = httpx.get(f"{base}/bad-x/broken", params={"item": "1"})
        assert broken.status_code == 503 and broken.json()["error"]["code"] == "agent_directory_unavailable"


def _registry():
    from robutler_core.plugins import SkillRegistry

    registry = SkillRegistry.from_plugin_manager(get_plugin_manager(load_entry_points=False))
    registry.add(Greeter, name="greeter")
    registry.add(Unreadable, name="unreadable")
    return registry


def _until(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_reload_serves_the_new_agents_http_handlers_and_keeps_the_server_settings(tmp_path, caplog):
    from robutler_server.config import load_agents_file

    registry = _registry()
    agents_file = tmp_path / "agents.yaml"
    write(agents_file, "agents:\n  - name: first\n    model: test\n    skills: {greeter: {greeting: hi}}\n"
                       "server:\n  max_body_bytes: 100000\n")
    loaded = load_agents_file(agents_file, registry)
    app = create_app(loaded.agents, registry=registry, limits=loaded.limits, server=loaded.server,
                     reload_agents_file=agents_file, plugins=plugins_with())
    with serve_in_thread(app) as base:
        assert httpx.get(f"{base}/first/hello", params={"name": "ann"}).json() == {"greeting": "hi, ann"}
        time.sleep(0.3)  # the watcher has started
        write(agents_file, textwrap.dedent("""\
            agents:
              - name: first
                model: test
                skills: {greeter: {greeting: hey}}
              - name: second
                model: test
                skills: {greeter: {}}
            server:
              max_body_bytes: 200
              sse_ping: 5
        """))
        _until(lambda: httpx.get(f"{base}/second/hello").status_code == 200)
        assert httpx.get(f"{base}/second/hello", params={"name": "cy"}).json() == {"greeting": "hello, cy"}
        # the agent that replaced 'first' answers, not the one the server started with
        assert httpx.get(f"{base}/first/hello").json() == {"greeting": "hey, world"}
        changed = [r for r in caplog.records if "server settings changed" in r.getMessage()]
        assert len(changed) == 1 and changed[0].levelname == "WARNING"
        assert "(max_body_bytes, sse_ping)" in changed[0].getMessage()
        # the body limit in effect is still the start-up one
        long = [{"role": "user", "content": "x" * 1000}]
        assert httpx.post(f"{base}/second/chat/completions", json={"messages": long}).status_code == 200

        write(agents_file, "agents:\n  - name: third\n    model: test\n    skills: {unreadable: {}}\n")
        _until(lambda: any("refused" in r.getMessage() and "NoSuchType" in r.getMessage() for r in caplog.records))
        assert httpx.get(f"{base}/first/hello").status_code == 200  # the refused file changed nothing

        write(agents_file, "agents:\n  - name: second\n    model: test\n    skills: {greeter: {greeting: yo}}\n"
                           "server:\n  max_body_bytes: 100000\n")
        _until(lambda: httpx.get(f"{base}/first/hello").status_code == 404)  # gone with its agent
        assert httpx.get(f"{base}/second/hello").json() == {"greeting": "yo, world"}
    assert len([r for r in caplog.records if "server settings changed" in r.getMessage()]) == 1


def test_an_agent_that_left_the_cache_is_freed_after_its_http_handlers_served():
    import gc
    import weakref

    made = {}

    class Recording(GreetingTenants):
        @hookimpl
        def resolve_agent(self, name):
            agent = super().resolve_agent(name)
            if agent is not None:
                made[name] = weakref.ref(agent)
            return agent

    app = create_app([Agent("static", model="test")], plugins=plugins_with(Recording()),
                     server=ServerConfig(agent_cache_size=1))
    with serve_in_thread(app) as base:
        assert httpx.get(f"{base}/tenant-a/hello").status_code == 200
        assert httpx.get(f"{base}/tenant-b/hello").status_code == 200  # tenant-a leaves the cache
        deadline = time.monotonic() + 10
        while made["tenant-a"]() is not None:
            assert time.monotonic() < deadline, "tenant-a is still referenced: " + repr(
                [type(r).__name__ for r in gc.get_referrers(made["tenant-a"]())])
            gc.collect()
            time.sleep(0.05)
        assert made["tenant-b"]() is not None
