"""The ``auth`` and ``payments`` skills in agents served by robutler-server, against the real
platform service, driven by the official ``openai`` client over sockets."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from robutler_core import Agent, Skill, tool
from robutler_server import create_app
from robutler_server.testing import serve_in_thread
from robutler_skill_platform import AuthSkill, PaymentSkill, PricingInfo, pricing
from robutler_skill_platform.money import to_micros


class Shop(Skill):
    @tool
    @pricing(credits_per_call=0.01, reason="catalogue search")
    def search(self, query: str) -> str:
        """Search the catalogue."""
        return f"3 results for {query}"

    @tool(scope="owner")
    def restock(self, item: str) -> str:
        """Restock an item (owner only)."""
        return f"restocked {item}"


class Helper(Skill):
    @tool
    @pricing(credits_per_call=0.05)
    def broken(self, text: str) -> str:
        """A priced tool that fails."""
        raise RuntimeError("the printer is on fire")

    @tool
    @pricing()
    async def render(self, pages: int) -> str:
        """A tool priced by its result."""
        return "rendered", PricingInfo(credits=0.002, reason="1 page")


def agents(platform_url: str, owner_key: str, lock: str = "0.10") -> list[Agent]:
    def platform_skills():
        return {
            "auth": AuthSkill({"platform_url": platform_url, "api_key": owner_key}),
            "payments": PaymentSkill({"platform_url": platform_url, "api_key": owner_key, "per_request_lock": lock}),
        }

    return [
        Agent("shop", "Sell things.", model="test", skills={**platform_skills(), "shop": Shop()}),
        Agent("helper", "Help.", model="test", skills={**platform_skills(), "helper": Helper()}),
    ]


@pytest.fixture
def agent_server(world):
    with serve_in_thread(create_app(agents(world.url, world.owner_key))) as url:
        yield url


def client(url: str, agent: str, key: str | None, token: str | None = None) -> openai.AsyncOpenAI:
    headers = {"X-Payment-Token": token} if token else {}
    return openai.AsyncOpenAI(base_url=f"{url}/{agent}", api_key=key or "", default_headers=headers, max_retries=0)


async def settles(world) -> list[dict]:
    async with world.store.database.acquire() as connection:
        rows = await connection.fetch(
            "SELECT t.lock_id, t.charge_type, e.amount FROM platform_transactions t "
            "JOIN platform_entries e ON e.transaction_id = t.id AND e.account_id LIKE 'user:%' "
            "WHERE t.kind = 'settle' ORDER BY t.id"
        )
    return [dict(r) for r in rows]


async def test_no_key_and_a_bad_key_are_401(world, agent_server):
    async with httpx.AsyncClient() as http:  # the openai client always sends a key
        missing = await http.post(f"{agent_server}/shop/chat/completions", json={"model": "shop", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as bad:
        await client(agent_server, "shop", "rbt_wrong").chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}])
    assert bad.value.code == "invalid_api_key"


async def test_no_payment_token_is_402_with_what_to_pay(world, agent_server):
    with pytest.raises(openai.APIStatusError) as caught:
        await client(agent_server, "shop", world.payer_key).chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 402
    body = caught.value.response.json()
    assert body["error"]["code"] == "payment_required"
    assert body["accepts"] == [{"scheme": "token", "network": "robutler", "amount": "0.100000", "asset": "robutler:credits"}]


@pytest.mark.parametrize("kind", ["expired", "wrong-audience", "insufficient"])
async def test_a_token_that_cannot_pay_is_402(world, agent_server, kind):
    if kind == "expired":
        minted = await world.mint("1")
        token = world.store.signer.sign({"sub": world.payer["id"], "aud": "shop", "payment": {"balance": "1", "max_depth": 1, "depth": 0}, "jti": minted["token_id"]}, -10)[0]
    elif kind == "wrong-audience":
        token = (await world.mint("1", audience="helper"))["token"]
    else:
        token = (await world.mint("0.05"))["token"]
    with pytest.raises(openai.APIStatusError) as caught:
        await client(agent_server, "shop", world.payer_key, token).chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 402
    expected = {"expired": "payment_token_expired", "wrong-audience": "wrong_audience", "insufficient": "insufficient_balance"}
    assert caught.value.response.json()["error"]["code"] == expected[kind]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_paid_request_settles_once_what_it_used(world, agent_server, stream):
    minted = await world.mint("1")
    shop = client(agent_server, "shop", world.payer_key, minted["token"])
    if stream:
        chunks = await shop.chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}], stream=True)
        answer = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        answer = (await shop.chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}])).choices[0].message.content
    assert "3 results for" in answer and "restocked" not in answer  # a user gets public tools only
    await asyncio.sleep(0.2)  # finalize_connection runs after the last byte
    charged = await settles(world)
    assert [s["amount"] for s in charged] == [to_micros("0.01")]
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.990000", "locked": "0.000000"}
    assert (await world.store.balance(user_reference="olivia"))["balance"] == "0.010000"


async def test_the_owner_gets_owner_tools(world, agent_server):
    minted = await world.mint("1")
    answer = await client(agent_server, "shop", world.owner_key, minted["token"]).chat.completions.create(
        model="shop", messages=[{"role": "user", "content": "hi"}]
    )
    assert "restocked" in answer.choices[0].message.content


async def test_a_priced_tool_that_fails_is_not_charged(world, agent_server):
    minted = await world.mint("1", audience="helper")
    answer = await client(agent_server, "helper", world.payer_key, minted["token"]).chat.completions.create(
        model="helper", messages=[{"role": "user", "content": "hi"}]
    )
    assert "the printer is on fire" in answer.choices[0].message.content
    await asyncio.sleep(0.2)
    assert [s["amount"] for s in await settles(world)] == [to_micros("0.002")]  # render only


async def test_concurrent_paid_requests_never_overdraw(world):
    minted = await world.mint("0.60")
    with serve_in_thread(create_app(agents(world.url, world.owner_key, lock="0.01"))) as url:
        shop = client(url, "shop", world.payer_key, minted["token"])

        async def ask():
            try:
                await shop.chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}])
                return 200
            except openai.APIStatusError as exc:
                assert exc.response.json()["error"]["code"] == "insufficient_balance"
                return exc.status_code

        statuses = await asyncio.gather(*(ask() for _ in range(100)))
        await asyncio.sleep(0.5)
    assert statuses.count(200) == 60 and statuses.count(402) == 40
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.000000", "locked": "0.000000"}
    assert sum(s["amount"] for s in await settles(world)) == to_micros("0.60")
    await world.ledger_is_balanced()
