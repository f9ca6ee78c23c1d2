"""Agents that find and pay each other: a coordinator (served here) discovers a specialist by
intent and calls it through NLI; the specialists run in their own process
(``nli_specialists.py``); everything talks over loopback to the real platform service."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from robutler_core import Agent
from robutler_core.testing.chunks import finish_chunks, text_chunks, tool_call_chunks
from robutler_core.testing.models import ScriptedModel
from robutler_server import create_app
from robutler_server.testing import free_port, serve_in_thread
from robutler_skill_platform import AuthSkill, DiscoverySkill, NLISkill, PaymentSkill
from robutler_skill_platform.money import to_micros
from robutler_skill_platform.nli import NLIError

SPECIALISTS = ["currency", "poet", "pricey", "slow", "ping", "pong"]


class CostingModel(ScriptedModel):
    """Scripted turns, each model call costing 0.001 dollars."""

    async def usage_cost(self, usage):
        return 0.001


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def calls(*turns):
    """A model that makes each turn's tool calls in order, then answers "done"."""
    script = [tool_call_chunks([call]) + finish_chunks("tool_calls", usage=USAGE) for call in turns]
    return CostingModel(script + [text_chunks("done") + finish_chunks("stop", usage=USAGE)])


async def start(world, key: str, *names: str) -> tuple[subprocess.Popen, int]:
    """A process serving agents of ``nli_specialists.py`` (all but the coordinator when no
    name is given) on a free port, with ``key`` as the owner's API key, once it answers."""
    port = free_port()
    env = {**os.environ, "ROBUTLER_API_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("nli_specialists.py")), str(port), world.url, *names],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return process, port
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(process.stdout.read())
            await asyncio.sleep(0.2)


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


@pytest.fixture
async def owners(world):
    return await make_owners(world)


async def make_owners(world) -> dict:
    """sam owns the specialists, olivia the coordinator; sam's API key."""
    sam = await world.store.create_user("sam")
    for name in SPECIALISTS:
        await world.store.register_agent(name, "sam")
    await world.store.register_agent("coordinator", "olivia")
    return {"sam": sam, "sam_key": (await world.store.create_key("sam"))["key"]}


@pytest.fixture
async def network(world, owners):
    """The specialists' process (owned by sam) on a free port."""
    process, port = await start(world, owners["sam_key"])
    try:
        yield {"port": port, "sam": owners["sam"]}
    finally:
        stop(process)


def coordinator(world, model, **nli) -> Agent:
    return Agent("coordinator", "Coordinate.", model=model, skills={
        "auth": AuthSkill({"platform_url": world.url, "api_key": world.owner_key}),
        "payments": PaymentSkill({"platform_url": world.url, "api_key": world.owner_key}),
        "discovery": DiscoverySkill({"platform_url": world.url, "api_key": world.owner_key}),
        "nli": NLISkill({"platform_url": world.url, "api_key": world.owner_key, "allowlist": ["127.0.0.0/8"], **nli}),
    })


async def ask(world, agent, token):
    with serve_in_thread(create_app([agent])) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/coordinator", api_key=world.payer_key,
                                    default_headers={"X-Payment-Token": token}, max_retries=0)
        answer = await client.chat.completions.create(model="coordinator", messages=[{"role": "user", "content": "go"}])
        await asyncio.sleep(0.3)  # the coordinator settles after its last byte
    return answer.choices[0].message.content


def tool_result(model, turn):
    """What the model saw as the tool's result before its ``turn``-th call."""
    return model.calls[turn][0][-1]["content"]


async def ledger(world) -> dict:
    async with world.store.database.acquire() as connection:
        settles = await connection.fetch(
            "SELECT t.created_by, e.amount FROM platform_transactions t JOIN platform_entries e "
            "ON e.transaction_id = t.id AND e.account_id LIKE 'user:%' WHERE t.kind = 'settle' ORDER BY t.id"
        )
        open_locks = await connection.fetchval("SELECT count(*) FROM platform_locks WHERE status = 'open'")
    return {"settles": [(r["created_by"], r["amount"]) for r in settles], "open_locks": open_locks}


async def test_three_servers_a_coordinator_finds_a_specialist_and_the_payer_pays_once(one_world):
    """Three server processes (the coordinator, the currency agent, the poet) and the platform:
    the coordinator's model discovers by intent and delegates to what it found."""
    world, owners = one_world, await make_owners(one_world)
    currency, _ = await start(world, owners["sam_key"], "currency")
    poet, _ = await start(world, owners["sam_key"], "poet")
    coordinator_process, port = await start(world, world.owner_key, "coordinator")
    try:
        minted = await world.mint("1", audience="coordinator")
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/coordinator", api_key=world.payer_key,
                                    default_headers={"X-Payment-Token": minted["token"]}, max_retries=0)
        answer = await client.chat.completions.create(model="coordinator", messages=[{"role": "user", "content": "go"}])
        assert answer.choices[0].message.content.startswith("The specialist says: Tool results:")
        assert "convert returned" in answer.choices[0].message.content  # currency's tool, not the poet's
        for _ in range(50):
            if len((await ledger(world))["settles"]) == 2:
                break
            await asyncio.sleep(0.1)
    finally:
        stop(currency, poet, coordinator_process)
    sam, olivia = owners["sam"]["id"], world.owner["id"]
    # currency settled its tool (0.02) from the child token; the coordinator its three model
    # calls (0.003) from the caller's lock; once each; the rest of the authorisation came back
    assert sorted((await ledger(world))["settles"]) == sorted([(sam, to_micros("0.02")), (olivia, to_micros("0.003"))])
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.977000", "locked": "0.000000"}
    assert (await world.store.balance(user_reference="paul"))["balance"] == "9.000000"
    await world.ledger_is_balanced()


async def test_a_coordinator_finds_a_specialist_by_intent_and_pays_exactly_what_it_charged(world, network):
    minted = await world.mint("1", audience="coordinator")
    model = calls(("discover_agents", {"query": "convert currencies"}),
                  ("nli_tool", {"agent": "currency", "message": "100 USD in EUR?", "authorized_amount": 0.10}))
    assert await ask(world, coordinator(world, model), minted["token"]) == "done"
    found = json.loads(tool_result(model, 1))
    assert found[0]["name"] == "currency" and "poet" not in [a["name"] for a in found[:1]]
    assert found[0]["url"] == f"http://127.0.0.1:{network['port']}/currency"
    assert "convert returned" in tool_result(model, 2)  # the specialist ran its tool and answered
    # the specialist settled its tool (0.02) from the child token; the coordinator its three
    # model calls (0.003) from the caller's lock; nothing else, once each
    sam, olivia = network["sam"]["id"], world.owner["id"]
    assert sorted((await ledger(world))["settles"]) == sorted([(sam, to_micros("0.02")), (olivia, to_micros("0.003"))])
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.977000", "locked": "0.000000"}
    await world.ledger_is_balanced()


async def test_a_specialist_charging_more_than_authorised_is_refused(world, network):
    minted = await world.mint("1", audience="coordinator")
    model = calls(("nli_tool", {"agent": "pricey", "message": "a vase", "authorized_amount": 0.10}))
    with_url = coordinator(world, model, agents={"pricey": f"http://127.0.0.1:{network['port']}/pricey"})
    await ask(world, with_url, minted["token"])
    assert "priceless" not in tool_result(model, 1)  # its 0.50 tool was not run
    assert all(amount <= to_micros("0.10") for _, amount in (await ledger(world))["settles"])
    assert (await world.store.balance(token=minted["token"]))["balance"] == "0.998000"  # two model calls only
    await world.ledger_is_balanced()


async def test_a_specialist_that_times_out_leaves_no_lock_behind(world, network):
    minted = await world.mint("1", audience="coordinator")
    model = calls(("nli_tool", {"agent": "slow", "message": "think", "authorized_amount": 0.10}))
    agent = coordinator(world, model, timeout=1, agents={"slow": f"http://127.0.0.1:{network['port']}/slow"})
    started = time.monotonic()
    await ask(world, agent, minted["token"])
    assert time.monotonic() - started < 15
    assert "did not answer within 1 s" in tool_result(model, 1)
    for _ in range(50):
        if (await ledger(world))["open_locks"] == 0:
            break
        await asyncio.sleep(0.1)
    assert (await ledger(world))["open_locks"] == 0
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.998000", "locked": "0.000000"}


async def test_a_delegation_loop_stops_at_max_depth(world, network):
    minted = await world.mint("1", audience="coordinator", max_depth=2)
    model = calls(("nli_tool", {"agent": "ping", "message": "ping?", "authorized_amount": 0.10}))
    await ask(world, coordinator(world, model, agents={"ping": f"http://127.0.0.1:{network['port']}/ping"}), minted["token"])
    # coordinator -> ping (depth 1) -> pong (depth 2); pong's call back to ping was refused
    assert tool_result(model, 1).endswith(
        "pong said: ping said: Error: cannot pay agent 'ping': the payment token may be delegated 2 level(s) deep at most"
    )
    await world.ledger_is_balanced()


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"agent": "currency", "message": "x", "authorized_amount": 5}, "more than this agent may authorise"),
        ({"agent": "nobody", "message": "x"}, "unknown agent 'nobody'"),
        ({"agent": "http://10.1.2.3/currency", "message": "x"}, "not on this agent's allowlist"),
    ],
)
async def test_calls_that_are_not_made(world, arguments, words):
    await world.store.register_agent("coordinator", "olivia")
    minted = await world.mint("1", audience="coordinator")
    model = calls(("nli_tool", arguments))
    await ask(world, coordinator(world, model, max_authorized_amount=1.0), minted["token"])
    assert words in tool_result(model, 1)
    assert (await world.store.balance(token=minted["token"]))["balance"] == "0.998000"  # nothing delegated


async def test_a_loopback_address_is_refused_unless_allowlisted(world):
    nli = NLISkill({"platform_url": world.url, "agents": {"local": "http://127.0.0.1:9/local"}})
    with pytest.raises(NLIError, match="private or loopback address"):
        await nli.check_address("http://127.0.0.1:9/local")
    await NLISkill({"platform_url": world.url, "allowlist": ["127.0.0.1"]}).check_address("http://127.0.0.1:9/local")
