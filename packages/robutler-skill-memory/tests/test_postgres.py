"""postgres.connect(): migrations, timeouts, the shared embedded PostgreSQL and its lifetime,
a database that goes away and comes back, and `robutler serve` stopping it on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from robutler_core import Agent
from robutler_server.app import create_app
from robutler_server.testing import free_port, serve_in_thread
from robutler_core import postgres
from robutler_skill_memory import LongTermMemorySkill
from robutler_core.postgres import DatabaseUnavailableError, connect

ROBUTLER = str(Path(sys.executable).with_name("robutler"))


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Live (not zombie) postgres processes serving ``pgdata``."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] != psutil.STATUS_ZOMBIE and str(pgdata) in " ".join(cmdline):
            found.append(process)
    return found


def wait_until_gone(pgdata: Path, timeout: float = 10) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := postgres_processes(pgdata)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


async def test_migrations_apply_each_version_once_when_processes_start_together(postgres_target):
    migrations = ["CREATE TABLE things (id int)", "ALTER TABLE things ADD COLUMN name text"]
    databases = [await connect(postgres_target.dsn, name=f"worker {i}") for i in range(5)]
    try:
        # CREATE TABLE without IF NOT EXISTS: a second application would fail
        await asyncio.gather(*(db.migrate("things", migrations) for db in databases))
        await databases[0].migrate("things", [*migrations, "CREATE INDEX things_name ON things (name)"])
        async with databases[0].acquire() as connection:
            rows = await connection.fetch(
                "SELECT version FROM robutler_migrations WHERE namespace = 'things' ORDER BY version")
            columns = await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'things'",
                postgres_target.schema)
        assert [r["version"] for r in rows] == [1, 2, 3]
        assert {c["column_name"] for c in columns} == {"id", "name"}
    finally:
        for db in databases:
            await db.close()


async def test_a_failing_migration_applies_nothing_of_its_version(postgres_target):
    db = await connect(postgres_target.dsn, name="test")
    try:
        await db.migrate("fine", ["SELECT 1"])
        with pytest.raises(asyncpg.exceptions.PostgresSyntaxError):
            await db.migrate("broken", ["CREATE TABLE a (id int); CREATE TABLEX b (id int)"])
        async with db.acquire() as connection:
            assert await connection.fetchval("SELECT to_regclass('a')") is None
            assert await connection.fetchval("SELECT count(*) FROM robutler_migrations WHERE namespace = 'broken'") == 0
        await db.migrate("broken", ["CREATE TABLE a (id int)"])  # fixed: applies
        async with db.acquire() as connection:
            assert await connection.fetchval("SELECT to_regclass('a')::text") == "a"
    finally:
        await db.close()


async def test_an_unreachable_server_is_a_clean_error_without_the_password():
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as error:
        await connect(f"postgresql://robutler:hunter2@127.0.0.1:{free_port()}/memory", name="test")
    assert time.monotonic() - started < postgres.CONNECT_TIMEOUT + 1
    assert "is unavailable" in str(error.value) and "127.0.0.1" in str(error.value)
    assert "hunter2" not in str(error.value)


async def test_the_environment_dsn_is_used_when_no_dsn_is_given(postgres_target, monkeypatch):
    monkeypatch.setenv("ROBUTLER_POSTGRES_DSN", postgres_target.dsn)
    db = await connect(None, name="test")
    try:
        assert db.dsn == postgres_target.dsn and not db.embedded
        async with db.acquire() as connection:
            assert await connection.fetchval("SELECT current_schema()") == postgres_target.schema
    finally:
        await db.close()


# What one user of a pooled connection may leave behind, and how the next user of that same
# connection would see it: (statements of the first user, a query that returns the leftover).
_SESSION_LEFTOVERS = {
    "a SET": (["SET work_mem = '1234kB'"], "SELECT current_setting('work_mem') = '1234kB'"),
    "set_config with arguments": (
        [("SELECT set_config($1, $2, false)", "work_mem", "1234kB")], "SELECT current_setting('work_mem') = '1234kB'"),
    "a session advisory lock": (
        [("SELECT pg_advisory_lock($1)", 42)],
        "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"),
    "a LISTEN": (["LISTEN robutler_test"], "SELECT count(*) > 0 FROM pg_listening_channels()"),
    "a WITH HOLD cursor": (
        ["BEGIN", "DECLARE held CURSOR WITH HOLD FOR SELECT 1", "COMMIT"], "SELECT count(*) > 0 FROM pg_cursors WHERE name <> ''"),
    "a temporary table": (["CREATE TEMP TABLE scratch (id int)"], "SELECT to_regclass('pg_temp.scratch') IS NOT NULL"),
    "an open transaction": (
        ["CREATE TABLE IF NOT EXISTS kept (id int)", "BEGIN", "INSERT INTO kept VALUES (1)"],
        "SELECT count(*) > 0 FROM kept"),
    "a transaction's SET LOCAL": (
        ["BEGIN", "SET LOCAL work_mem = '1234kB'", "COMMIT"], "SELECT current_setting('work_mem') = '1234kB'"),
}


@pytest.mark.parametrize("leftover", list(_SESSION_LEFTOVERS))
async def test_a_released_connection_leaves_no_session_state_to_its_next_user(postgres_target, leftover):
    statements, check = _SESSION_LEFTOVERS[leftover]
    db = await connect(postgres_target.dsn, name="test")
    try:
        async with db.acquire() as connection:
            pid = await connection.fetchval("SELECT pg_backend_pid()")
            for statement in statements:
                if isinstance(statement, tuple):
                    await connection.fetchval(*statement)
                else:
                    await connection.execute(statement)
            assert await connection.fetchval(check) is (leftover != "a transaction's SET LOCAL")
        async with db.acquire() as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == pid  # the same connection
            assert not connection.is_in_transaction()
            assert await connection.fetchval(check) is False
    finally:
        await db.close()


async def test_only_a_connection_that_may_hold_session_state_pays_the_full_reset(postgres_target):
    """The full reset is a round trip on every release by asyncpg's default: here it runs
    after a SET, after a use marked ``session_state=True`` (a function that sets a setting
    inside, which the statement's text does not show), and not after plain queries, a
    transaction's SET LOCAL or a transaction-level advisory lock."""
    db = await connect(postgres_target.dsn, name="test")
    sent: list[str] = []
    try:
        async with db.acquire() as connection:
            connection.add_query_logger(lambda record: sent.append(record.query))  # kept across uses
            await connection.execute(
                "CREATE FUNCTION sneaky() RETURNS void LANGUAGE sql AS $$ SELECT set_config('work_mem', '1234kB', false) $$")

        async def released_after(*statements: str, session_state: bool = False) -> bool:
            await asyncio.sleep(0)  # query loggers are called soon after each query
            sent.clear()
            async with db.acquire(session_state=session_state) as connection:
                async with connection.transaction():
                    for statement in statements:
                        await connection.fetch(statement)
            await asyncio.sleep(0)
            return any("RESET ALL" in query for query in sent)

        assert await released_after("SELECT 1") is False
        assert await released_after("SELECT count(*) FROM pg_class WHERE relname = 'x'") is False
        assert await released_after("SET LOCAL work_mem = '1234kB'", "SELECT pg_advisory_xact_lock(7)") is False
        assert await released_after("SET work_mem = '1234kB'") is True
        assert await released_after("SELECT sneaky()", session_state=True) is True
        async with db.acquire() as connection:
            assert await connection.fetchval("SHOW work_mem") != "1234kB"
    finally:
        await db.close()


async def test_a_client_mistake_is_not_reported_as_the_database_unavailable(postgres_target):
    """asyncpg's InterfaceError is mostly a client mistake: it propagates as it is; on a
    connection the server closed, or from a closed pool, it means unreachable."""
    db = await connect(postgres_target.dsn, name="test")
    try:
        with pytest.raises(asyncpg.InterfaceError, match="expects 1 argument") as raised:
            async with db.acquire() as connection:
                await connection.fetchval("SELECT $1::int")  # no argument given
        assert not isinstance(raised.value, DatabaseUnavailableError)
        with pytest.raises(asyncpg.InterfaceError, match="another operation is in progress"):
            async with db.acquire() as connection:
                _, second = await asyncio.gather(
                    connection.fetchval("SELECT pg_sleep(0.1)"), connection.fetchval("SELECT 1"), return_exceptions=True)
                raise second

        # the server ends a connection: a statement on it after that is "unavailable" (asyncpg
        # raises an InterfaceError: "connection is closed", or "released back to the pool")
        with pytest.raises(DatabaseUnavailableError, match="is unavailable .*InterfaceError"):
            async with db.acquire() as connection:
                pid = await connection.fetchval("SELECT pg_backend_pid()")
                async with db.acquire() as other:
                    await other.fetchval("SELECT pg_terminate_backend($1)", pid)
                await asyncio.sleep(0.2)  # asyncpg sees the connection end
                await connection.fetchval("SELECT 1")
        with pytest.raises(DatabaseUnavailableError, match="ConnectionResetError: unreachable"):
            async with db.acquire():
                raise ConnectionResetError("unreachable")  # an OSError is "unavailable"
        async with db.acquire() as connection:  # the pool replaced it
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        await db.close()
    with pytest.raises(DatabaseUnavailableError, match="pool is closed"):
        async with db.acquire():
            pass


async def test_a_full_pool_waits_at_most_the_connect_timeout(postgres_target, monkeypatch):
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 0.3)
    db = await connect(postgres_target.dsn, name="test")
    try:
        held = [db.acquire() for _ in range(postgres.POOL_MAX_SIZE)]
        connections = [await h.__aenter__() for h in held]
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="TimeoutError"):
            async with db.acquire():
                pass
        assert 0.25 < time.monotonic() - started < 2
        # a waiter gets the connection given back meanwhile
        async def give_back_soon() -> None:
            await asyncio.sleep(0.05)
            await held[0].__aexit__(None, None, None)

        async def wait_for_one() -> int:
            async with db.acquire() as connection:
                return await connection.fetchval("SELECT 1")

        assert (await asyncio.gather(give_back_soon(), wait_for_one()))[1] == 1
        for h in held[1:]:
            await h.__aexit__(None, None, None)
        assert len(connections) == postgres.POOL_MAX_SIZE
    finally:
        await db.close()


async def test_connections_come_back_to_the_pool_however_their_block_ends(postgres_target):
    """A block that fails, is cancelled, or leaves a transaction open gives its connection
    back to asyncpg's pool all the same, with the transaction rolled back."""
    db = await connect(postgres_target.dsn, name="test")
    try:
        async def hold_until_cancelled(started: asyncio.Event) -> None:
            async with db.acquire() as connection:
                await connection.execute("BEGIN")
                started.set()
                await connection.fetchval("SELECT pg_sleep(10)")

        for _ in range(2):
            events = [asyncio.Event() for _ in range(postgres.POOL_MAX_SIZE)]
            tasks = [asyncio.create_task(hold_until_cancelled(e)) for e in events]
            await asyncio.gather(*(e.wait() for e in events))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with pytest.raises(ZeroDivisionError):
                async with db.acquire() as connection:
                    1 / 0
        # every connection is free again, in no transaction
        held = [db.acquire() for _ in range(postgres.POOL_MAX_SIZE)]
        for connection in [await h.__aenter__() for h in held]:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT 1") == 1
        for h in held:
            await h.__aexit__(None, None, None)
        assert db.pool.get_idle_size() == postgres.POOL_MAX_SIZE
    finally:
        await db.close()


async def test_a_connection_lost_or_expired_between_uses_is_never_used_again(postgres_target):
    db = await connect(postgres_target.dsn, name="test")
    try:
        async with db.acquire() as connection:
            lost = await connection.fetchval("SELECT pg_backend_pid()")
        # its server process ends while the connection is idle in the pool (a restart, an
        # administrator): every later use gets a working connection, none that one
        admin = await asyncpg.connect(postgres_target.dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost) is True
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
        for _ in range(postgres.POOL_MAX_SIZE + 1):
            async with db.acquire() as connection:
                assert await connection.fetchval("SELECT pg_backend_pid()") != lost
        # connections expired (as after a schema change needing new codecs) are replaced
        held = [db.acquire() for _ in range(3)]
        before = {await c.fetchval("SELECT pg_backend_pid()") for c in [await h.__aenter__() for h in held]}
        for h in held:
            await h.__aexit__(None, None, None)
        await db.pool.expire_connections()
        for _ in range(postgres.POOL_MAX_SIZE + 1):
            async with db.acquire() as connection:
                assert await connection.fetchval("SELECT pg_backend_pid()") not in before
    finally:
        await db.close()


async def test_the_embedded_server_is_shared_and_stopped_by_the_last_close(own_data_dir):
    pgdata = own_data_dir / "postgres"
    first = await connect(None, name="one")
    second = await connect(None, name="two")
    assert first.embedded and first.dsn == second.dsn
    postmaster = postgres_processes(pgdata)
    assert postmaster
    await first.close()
    async with second.acquire() as connection:  # still serving the other user
        assert await connection.fetchval("SELECT 1") == 1
    await second.close()
    await second.close()  # twice is fine
    assert wait_until_gone(pgdata) == []
    # and it starts again for a later user
    third = await connect(None, name="three")
    try:
        async with third.acquire() as connection:
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        await third.close()
    assert wait_until_gone(pgdata) == []


async def test_a_killed_process_does_not_keep_the_embedded_server_running(own_data_dir):
    """pgserver counts the processes using a data directory; one killed without letting go
    (SIGKILL) must not keep the server running after the last live process closes."""
    pgdata = own_data_dir / "postgres"
    db = await connect(None, name="test")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    server = postgres._embedded[pgdata.resolve()].server
    server.global_process_id_list.get_and_add(dead.pid)
    await db.close()
    assert wait_until_gone(pgdata) == []


def _stop(server) -> None:
    """Stop an embedded PostgreSQL as a crash or an administrator would (pg_ctl, immediate)."""
    import pgserver

    pgserver.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)


async def test_a_database_that_goes_away_gives_tool_errors_then_works_again(own_data_dir):
    """While an agent serves: PostgreSQL stops, a request gets tool errors and a complete
    answer; PostgreSQL starts again, the same agent's memory works, with no restart."""
    pgdata = own_data_dir / "postgres"
    agent = Agent("keeper", model="test", skills={"long_term_memory": LongTermMemorySkill()})
    body = {"model": "keeper", "messages": [{"role": "user", "content": "remember a"}]}
    with serve_in_thread(create_app([agent])) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def ask() -> str:
                response = await client.post("/keeper/chat/completions", json=body)
                assert response.status_code == 200, response.text
                assert response.json()["choices"][0]["finish_reason"] == "stop"
                return response.json()["choices"][0]["message"]["content"]

            answer = await ask()  # the test model calls every tool once
            assert "store_fact returned {" in answer and "Error" not in answer

            server = postgres._embedded[pgdata.resolve()].server
            await asyncio.to_thread(_stop, server)
            assert wait_until_gone(pgdata) == []
            started = time.monotonic()
            answer = await ask()
            assert time.monotonic() - started < 3 * postgres.CONNECT_TIMEOUT
            for name in ("store_fact", "retrieve_facts", "forget_fact"):
                assert f"{name} returned Error: tool '{name}' failed: DatabaseUnavailableError: " \
                       "the embedded PostgreSQL is unavailable" in answer, answer

            await asyncio.to_thread(server.ensure_postgres_running)
            answer = await ask()
            assert "store_fact returned {" in answer and "Error" not in answer, answer
    # the server's lifespan closed the agent: the embedded PostgreSQL is stopped
    assert wait_until_gone(pgdata) == []


def test_robutler_serve_stops_its_embedded_postgres_on_sigterm(tmp_path, own_data_dir):
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text(
        "agents:\n  - name: keeper\n    model: test\n    skills:\n      long_term_memory: {}\n")
    data = own_data_dir
    env = {k: v for k, v in os.environ.items() if k != "ROBUTLER_POSTGRES_DSN"}
    env.update(ROBUTLER_DATA_DIR=str(data), LITELLM_LOCAL_MODEL_COST_MAP="True")
    port = free_port()
    process = subprocess.Popen(
        [ROBUTLER, "serve", str(agents_file), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
            time.sleep(0.1)
        reply = httpx.post(f"http://127.0.0.1:{port}/keeper/chat/completions", timeout=30,
                           json={"model": "keeper", "messages": [{"role": "user", "content": "hi"}]})
        assert "store_fact returned {" in reply.json()["choices"][0]["message"]["content"]
        pgdata = (data / "postgres").resolve()
        assert postgres_processes(pgdata)  # serve started the embedded PostgreSQL

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert wait_until_gone(pgdata) == [], output
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
