"""Stored responses: each caller sees only their own, in process memory (bounded) and in
PostgreSQL (shared, kept across a restart of ``robutler serve --state-dsn``)."""

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import httpx
import openai
import pytest

from robutler_core import Agent, Skill, hook
from robutler_core.errors import AuthenticationError, ConfigurationError
from robutler_server import create_app
from robutler_server.responses_store import MemoryResponseStore, PostgresResponseStore, StoredResponse, response_store
from robutler_server.testing import serve_in_thread

DSN = os.environ.get("ROBUTLER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_answers() -> bool:
    try:
        import asyncpg

        async def ping():
            connection = await asyncpg.connect(DSN, timeout=3)
            await connection.close()

        asyncio.run(ping())
        return True
    except Exception:
        return False


needs_postgres = pytest.mark.skipif(not postgres_answers(), reason=f"no PostgreSQL answers at {DSN}")


class HeaderIdentity(Skill):
    """The caller is the ``x-user`` header; no header is an anonymous caller, ``nobody`` is 401."""

    @hook("on_connection", priority=1)
    def identify(self, context):
        user = context.headers.get("x-user")
        if user == "nobody":
            raise AuthenticationError("unknown user")
        context.peer_user_id = user


def make_app(store, name="notes"):
    return create_app([Agent(name, model="test", skills={"identity": HeaderIdentity()}),
                       Agent("other", model="test", skills={"identity": HeaderIdentity()})], response_store=store)


def as_user(url, user):
    headers = {"x-user": user} if user else {}
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, default_headers=headers)


@pytest.fixture
def schema():
    """A fresh PostgreSQL schema, dropped afterwards; yields its name."""
    import asyncpg

    name = f"responses_{uuid.uuid4().hex[:10]}"

    async def run(sql):
        connection = await asyncpg.connect(DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(run(f'DROP SCHEMA "{name}" CASCADE'))


def stores():
    yield pytest.param("memory", id="memory")
    yield pytest.param("postgres", id="postgres", marks=needs_postgres)


@pytest.fixture(params=stores())
def store(request):
    if request.param == "memory":
        yield MemoryResponseStore()
    else:
        yield PostgresResponseStore(DSN, table=f"{request.getfixturevalue('schema')}.responses")


def test_callers_cannot_read_each_others_responses(store):
    with serve_in_thread(make_app(store)) as url:
        alice, bob, anonymous = as_user(url, "alice"), as_user(url, "bob"), as_user(url, None)
        mine = alice.responses.create(model="notes", input="my secret is 42")
        assert alice.responses.retrieve(mine.id).output_text == 'TestModel received: "my secret is 42"'
        for stranger in (bob, anonymous):
            with pytest.raises(openai.NotFoundError) as info:
                stranger.responses.retrieve(mine.id)
            assert "secret" not in str(info.value.body)
            with pytest.raises(openai.NotFoundError):
                stranger.responses.input_items.list(mine.id)
            with pytest.raises(openai.NotFoundError) as info:  # nor continue it
                stranger.responses.create(model="notes", input="what is my secret?", previous_response_id=mine.id)
            assert info.value.body["param"] == "previous_response_id"
            with pytest.raises(openai.NotFoundError):
                stranger.responses.delete(mine.id)
        with pytest.raises(openai.AuthenticationError):  # the agent's auth hooks run on retrieval
            as_user(url, "nobody").responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):  # the same caller, through another agent
            alice.responses.create(model="other", input="x", previous_response_id=mine.id)
        follow_up = alice.responses.create(model="notes", input="and now?", previous_response_id=mine.id)
        assert follow_up.output_text == 'TestModel received: "and now?"'
        assert alice.responses.retrieve(mine.id).id == mine.id  # bob's attempt to delete it failed
        alice.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(mine.id)
        anonymous_one = anonymous.responses.create(model="notes", input="x")
        assert anonymous.responses.retrieve(anonymous_one.id).id == anonymous_one.id
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(anonymous_one.id)


def test_input_items_pages(store):
    with serve_in_thread(make_app(store)) as url:
        items = [{"role": "user", "content": f"part {i}"} for i in range(5)]
        response = as_user(url, "alice").responses.create(model="notes", input=items)
        listed = httpx.get(f"{url}/notes/responses/{response.id}/input_items",
                           params={"limit": 2, "order": "asc"}, headers={"x-user": "alice"}).json()
        assert [i["content"][0]["text"] for i in listed["data"]] == ["part 0", "part 1"] and listed["has_more"]
        rest = httpx.get(f"{url}/notes/responses/{response.id}/input_items", headers={"x-user": "alice"},
                         params={"order": "asc", "after": listed["last_id"]}).json()
        assert [i["content"][0]["text"] for i in rest["data"]] == ["part 2", "part 3", "part 4"]
        assert not rest["has_more"]
        newest_first = as_user(url, "alice").responses.input_items.list(response.id)
        assert newest_first.data[0].content[0].text == "part 4"
        bad = httpx.get(f"{url}/v1/responses/{response.id}/input_items", params={"limit": 0}, headers={"x-user": "alice"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


class BrokenStore(MemoryResponseStore):
    async def put(self, record):
        raise OSError("disk full")


@pytest.mark.parametrize("stream", [False, True])
def test_a_store_that_fails_loses_the_record_not_the_answer(stream, caplog):
    with serve_in_thread(make_app(BrokenStore())) as url:
        client = as_user(url, "alice")
        if stream:
            with client.responses.stream(model="notes", input="hi") as events:
                response = events.get_final_response()
        else:
            response = client.responses.create(model="notes", input="hi")
        assert response.output_text == 'TestModel received: "hi"' and response.status == "completed"
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response.id)
    assert f"storing response {response.id} failed" in caplog.text


async def test_memory_store_keeps_the_most_recent():
    store = MemoryResponseStore(max_responses=2)
    for i in range(3):
        await store.put(StoredResponse(f"resp_{i}", "a", None, {"id": f"resp_{i}"}, [], []))
    assert await store.get("resp_0") is None
    assert (await store.get("resp_2")).response == {"id": "resp_2"}
    assert await store.delete("resp_1") and not await store.delete("resp_1")
    with pytest.raises(ConfigurationError, match="positive integer"):
        MemoryResponseStore(max_responses=0)


def test_store_choice_and_bad_configuration():
    assert isinstance(response_store(None), MemoryResponseStore)
    assert isinstance(response_store(DSN), PostgresResponseStore)
    with pytest.raises(ConfigurationError, match="not a plain SQL identifier"):
        PostgresResponseStore(DSN, table="x; DROP TABLE y")


async def test_unreachable_database_is_a_configuration_error_without_the_password():
    store = PostgresResponseStore("postgresql://me:hunter2secret@127.0.0.1:1/db")
    with pytest.raises(ConfigurationError, match=r"\(127\.0\.0\.1:1/db\)") as info:
        await store.get("resp_x")
    assert "hunter2secret" not in str(info.value)


def serve_command(agents_file, env):
    """``robutler serve AGENTS_FILE --port 0`` in a subprocess; returns (process, url)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", str(agents_file), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    url, lines = None, []
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if found and found.group(1) != "0":
            url = found.group(0)
    assert url, "robutler serve did not start: " + "".join(lines)
    threading.Thread(target=process.stdout.read, daemon=True).start()
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    return process, url


@needs_postgres
def test_a_restart_with_a_dsn_keeps_the_responses(schema, tmp_path):
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text("agents:\n  - name: notes\n    model: test\n")
    env = {**os.environ, "ROBUTLER_POSTGRES_DSN": f"{DSN}?search_path={schema}"}
    first, url = serve_command(agents_file, env)
    try:
        client = as_user(url, None)
        created = client.responses.create(model="notes", input="remember me")
        with client.responses.stream(model="notes", input="and me", previous_response_id=created.id) as stream:
            streamed = stream.get_final_response()
    finally:
        first.terminate()
        first.wait(timeout=10)
    second, url = serve_command(agents_file, env)
    try:
        client = as_user(url, None)
        assert client.responses.retrieve(created.id).output_text == 'TestModel received: "remember me"'
        assert client.responses.retrieve(streamed.id).previous_response_id == created.id
        follow_up = client.responses.create(model="notes", input="again", previous_response_id=streamed.id)
        assert follow_up.output_text == 'TestModel received: "again"'
    finally:
        second.terminate()
        second.wait(timeout=10)


def test_state_dsn_without_a_database_fails_start_up(tmp_path):
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text("agents:\n  - name: notes\n    model: test\n")
    result = subprocess.run(
        [sys.executable, "-c", "from robutler_server.cli import main; main()", "serve", str(agents_file),
         "--port", "0", "--state-dsn", "postgresql://postgres@127.0.0.1:1/none"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "cannot reach the PostgreSQL server for stored responses (127.0.0.1:1/none)" in result.stdout + result.stderr
