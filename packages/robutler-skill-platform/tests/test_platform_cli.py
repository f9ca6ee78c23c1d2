"""``robutler platform ...`` admin commands and ``robutler serve --with-platform``, run as a
user runs them: the installed ``robutler`` command in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import httpx
import openai
import pytest

from robutler_server.testing import free_port

ROBUTLER = [sys.executable, "-c", "from robutler_server.cli import main; main()"]
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def robutler(*args: str, dsn: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ROBUTLER, *args, "--dsn", dsn], capture_output=True, text=True, env=ENV, timeout=60)


def ok(*args: str, dsn: str) -> dict:
    done = robutler(*args, dsn=dsn)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_admin_commands_print_json_and_errors_are_one_line(one_platform_dsn):
    olivia = ok("platform", "create-user", "olivia", "--email", "o@example.com", dsn=one_platform_dsn)
    assert olivia["name"] == "olivia" and olivia["role"] == "user" and olivia["id"].startswith("usr_")
    ok("platform", "create-user", "paul", dsn=one_platform_dsn)
    key = ok("platform", "create-key", "olivia", dsn=one_platform_dsn)
    assert key["key"].startswith("rbt_") and key["user_id"] == olivia["id"]
    agent = ok("platform", "register-agent", "shop", "--owner", "olivia", dsn=one_platform_dsn)
    assert agent["owner_id"] == olivia["id"]
    assert ok("platform", "add-credits", "paul", "5", dsn=one_platform_dsn)["balance"] == "5.000000"
    minted = ok("platform", "mint-token", "--user", "paul", "--amount", "1.25", "--audience", "shop", dsn=one_platform_dsn)
    assert set(minted) == {"token", "balance", "audience", "expires_at"} and minted["balance"] == "1.250000"
    assert ok("platform", "balance", "--user", "paul", dsn=one_platform_dsn) == {"balance": "3.750000", "locked": "0.000000"}
    assert ok("platform", "balance", "--token", minted["token"], dsn=one_platform_dsn)["balance"] == "1.250000"
    assert ok("platform", "revoke-key", key["key_id"], dsn=one_platform_dsn) == {"key_id": key["key_id"], "revoked": True}

    for args, message in [
        (("create-user", "olivia"), "a user named 'olivia' exists already"),
        (("mint-token", "--user", "paul", "--amount", "-1", "--audience", "shop"), "--amount must be more than 0"),
        (("mint-token", "--user", "paul", "--amount", "100", "--audience", "shop"), "insufficient balance"),
        (("mint-token", "--user", "nobody", "--amount", "1", "--audience", "shop"), "no user with id or name 'nobody'"),
        (("balance",), "give either --user or --token"),
    ]:
        done = robutler("platform", *args, dsn=one_platform_dsn)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


async def test_serve_with_platform_serves_agents_and_the_platform_in_one_process(one_platform_dsn, tmp_path):
    ok("platform", "create-user", "olivia", dsn=one_platform_dsn)
    ok("platform", "create-user", "paul", dsn=one_platform_dsn)
    owner_key = ok("platform", "create-key", "olivia", dsn=one_platform_dsn)["key"]
    payer_key = ok("platform", "create-key", "paul", dsn=one_platform_dsn)["key"]
    ok("platform", "register-agent", "shop", "--owner", "olivia", dsn=one_platform_dsn)
    ok("platform", "add-credits", "paul", "2", dsn=one_platform_dsn)
    token = ok("platform", "mint-token", "--user", "paul", "--amount", "1", "--audience", "shop", dsn=one_platform_dsn)["token"]

    port = free_port()
    agents = tmp_path / "agents.yaml"
    agents.write_text(textwrap.dedent(f"""
        agents:
          - name: shop
            instructions: Sell things.
            model: test
            skills:
              auth: {{platform_url: "http://127.0.0.1:{port}"}}
              payments: {{platform_url: "http://127.0.0.1:{port}", per_request_lock: "0.05"}}
    """))
    env = {**ENV, "ROBUTLER_POSTGRES_DSN": one_platform_dsn, "ROBUTLER_API_KEY": owner_key}
    server = subprocess.Popen(
        [*ROBUTLER, "serve", str(agents), "--with-platform", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
            time.sleep(0.2)
        me = httpx.get(f"http://127.0.0.1:{port}/api/user", headers={"Authorization": f"Bearer {payer_key}"})
        assert me.json()["user"]["name"] == "paul"
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/shop", api_key=payer_key,
            default_headers={"X-Payment-Token": token}, max_retries=0,
        )
        answer = client.chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        with pytest.raises(openai.APIStatusError) as unpaid:
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/shop", api_key=payer_key, max_retries=0).chat.completions.create(
                model="shop", messages=[{"role": "user", "content": "hi"}]
            )
        assert unpaid.value.status_code == 402
        # the test model costs nothing: once the request has settled (after its last byte),
        # the lock is back in the token
        deadline = time.monotonic() + 30
        while (balance := ok("platform", "balance", "--token", token, dsn=one_platform_dsn))["locked"] != "0.000000":
            assert time.monotonic() < deadline, balance
            time.sleep(0.2)
        assert balance == {"balance": "1.000000", "locked": "0.000000"}
    finally:
        server.terminate()
        server.wait(timeout=30)


async def test_platform_serve_serves_the_api(one_platform_dsn):
    port = free_port()
    server = subprocess.Popen([*ROBUTLER, "platform", "serve", "--port", str(port), "--dsn", one_platform_dsn],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                jwks = httpx.get(f"http://127.0.0.1:{port}/api/auth/jwks")
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.2)
        assert jwks.status_code == 200 and jwks.json()["keys"][0]["alg"] == "RS256"
        assert httpx.get(f"http://127.0.0.1:{port}/api/user").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
