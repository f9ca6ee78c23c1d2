"""The ``auth`` and ``payments`` skills in agents served by robutler-server, against the real
platform service, driven by the official ``openai`` client over sockets."""

from __future__ import annotations

import asyncio
import threading

import httpx
import jwt
import openai
import pytest

from robutler_core import Agent, Skill, hook, tool
from robutler_core.testing.chunks import finish_chunks, text_chunks, tool_call_chunks
from robutler_core.testing.models import ScriptedModel
from robutler_server import create_app
from robutler_server.testing import serve_in_thread
from robutler_skill_platform import AuthSkill, DiscoverySkill, NLISkill, PaymentSkill, PricingInfo, pricing
from robutler_skill_platform.money import to_micros
from robutler_skill_platform.service.tokens import Signer


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


# --- model costs, disconnects, owner assertions ---------------------------------------------------

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


class MeteredModel(ScriptedModel):
    """A scripted model whose every call costs 0.0015 dollars; with ``hang``, the last turn
    streams its chunks and then never ends (until cancelled)."""

    def __init__(self, turns, hang=False):
        super().__init__(turns)
        self.hang = hang
        self.cancelled = threading.Event()

    async def usage_cost(self, usage):
        return 0.0015

    async def chat_completion_stream(self, messages, tools=None, **params):
        last = len(self.turns) == 1
        async for chunk in super().chat_completion_stream(messages, tools, **params):
            yield chunk
        if self.hang and last:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise


class UsageRecorder(Skill):
    """Keeps each request's usage records as ``finalize_connection`` sees them."""

    def __init__(self):
        super().__init__()
        self.records = []

    @hook("finalize_connection")
    def keep(self, context):
        self.records.append(list(context.usage_records))


def metered_agent(world, model, markup="1", recorder=None) -> Agent:
    return Agent("shop", "Sell things.", model=model, skills={
        "auth": AuthSkill({"platform_url": world.url, "api_key": world.owner_key}),
        "payments": PaymentSkill({"platform_url": world.url, "api_key": world.owner_key, "markup": markup}),
        "shop": Shop(),
        "recorder": recorder or UsageRecorder(),
    })


def search_then_answer(answer_chunks):
    return [
        tool_call_chunks([("search", {"query": "lamps"})]) + finish_chunks("tool_calls", usage=USAGE),
        answer_chunks,
    ]


async def test_model_calls_are_charged_at_cost_times_markup_and_tools_as_declared(world):
    minted = await world.mint("1")
    model = MeteredModel(search_then_answer(text_chunks("Lamps!") + finish_chunks("stop", usage=USAGE)))
    recorder = UsageRecorder()
    with serve_in_thread(create_app([metered_agent(world, model, markup="2", recorder=recorder)])) as url:
        answer = await client(url, "shop", world.payer_key, minted["token"]).chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "lamps?"}]
        )
        assert answer.choices[0].message.content == "Lamps!"
        await asyncio.sleep(0.2)
    (records,) = recorder.records
    assert [(r.kind, r.credits) for r in records] == [("llm", 0.0015), ("tool", 0.01), ("llm", 0.0015)]
    # the settle is the records' total: two model calls at 0.0015 x 2, one search at 0.01
    assert [s["amount"] for s in await settles(world)] == [to_micros("0.016")]


async def test_a_client_that_hangs_up_mid_stream_pays_for_what_was_used(world):
    minted = await world.mint("1")
    model = MeteredModel(search_then_answer(text_chunks("Lamps are")), hang=True)
    with serve_in_thread(create_app([metered_agent(world, model)])) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream(
                "POST", f"{url}/shop/chat/completions",
                json={"model": "shop", "messages": [{"role": "user", "content": "lamps?"}], "stream": True},
                headers={"Authorization": f"Bearer {world.payer_key}", "X-Payment-Token": minted["token"]},
            ) as response:
                async for line in response.aiter_lines():
                    if "Lam" in line:
                        break  # hang up while the model is still answering
        assert await asyncio.to_thread(model.cancelled.wait, 5)
        for _ in range(50):
            if await settles(world):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
    # the first model call (0.0015) and the search (0.01); the interrupted call reported no usage
    assert [s["amount"] for s in await settles(world)] == [to_micros("0.0115")]
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.988500", "locked": "0.000000"}


async def test_an_owner_assertion_makes_the_caller_owner_and_a_bad_one_is_401(world, agent_server):
    minted = await world.mint("1")
    async with httpx.AsyncClient(base_url=world.url, headers={"Authorization": f"Bearer {world.owner_key}"}) as http:
        for_shop = (await http.post("/api/auth/owner-assertion", json={"agent": "shop"})).json()["assertion"]
        for_helper = (await http.post("/api/auth/owner-assertion", json={"agent": "helper"})).json()["assertion"]
    forged = jwt.encode(jwt.decode(for_shop, options={"verify_signature": False}), Signer.new_private_pem(),
                        algorithm="RS256", headers={"kid": jwt.get_unverified_header(for_shop)["kid"]})

    def ask(assertion):
        return openai.AsyncOpenAI(
            base_url=f"{agent_server}/shop", api_key="unused", max_retries=0,
            default_headers={"X-Owner-Assertion": assertion, "X-Payment-Token": minted["token"]},
        ).chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}])

    assert "restocked" in (await ask(for_shop)).choices[0].message.content
    for bad, words in [(for_helper, "another agent"), (forged, "Signature verification failed"), ("x.y.z", "not valid")]:
        with pytest.raises(openai.AuthenticationError) as caught:
            await ask(bad)
        assert caught.value.code == "invalid_owner_assertion" and words in caught.value.message


async def test_an_owner_tool_called_by_a_users_model_does_not_run(world):
    minted = await world.mint("1")
    model = MeteredModel([
        tool_call_chunks([("restock", {"item": "lamps"})]) + finish_chunks("tool_calls"),
        text_chunks("ok") + finish_chunks("stop"),
    ])
    with serve_in_thread(create_app([metered_agent(world, model)])) as url:
        await client(url, "shop", world.payer_key, minted["token"]).chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "restock!"}]
        )
    tool_result = model.calls[1][0][-1]
    assert tool_result["role"] == "tool" and "restocked" not in tool_result["content"]
    assert "no tool named 'restock'" in tool_result["content"]  # not offered to a user, and not run


@pytest.mark.parametrize("kind", ["malformed", "forged", "foreign-issuer"])
async def test_a_bad_payment_token_is_402_naming_what_is_wrong(world, agent_server, kind):
    minted = await world.mint("1")
    claims = {k: v for k, v in jwt.decode(minted["token"], options={"verify_signature": False}).items() if k not in ("exp", "iat")}
    token = {
        "malformed": "not-a-token",
        "forged": jwt.encode({**claims, "exp": 2**31}, Signer.new_private_pem(), algorithm="RS256"),
        "foreign-issuer": world.store.signer.sign({**claims, "iss": "https://elsewhere.example"}, 60)[0],
    }[kind]
    with pytest.raises(openai.APIStatusError) as caught:
        await client(agent_server, "shop", world.payer_key, token).chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 402
    error = caught.value.response.json()["error"]
    assert error["code"] == "invalid_payment_token"
    assert {"malformed": "not valid", "forged": "signature", "foreign-issuer": "not issued by this platform"}[kind] in error["message"]


@pytest.mark.parametrize(
    "skill, config, words",
    [
        (PaymentSkill, {"markup": -1}, "option 'markup': Input should be greater than or equal to 0"),
        (PaymentSkill, {"per_request_lock": "0.0000001"}, "per_request_lock has more than six decimal places"),
        (PaymentSkill, {"per_request_lock": 0}, "per_request_lock must be more than 0"),
        (AuthSkill, {"cache_ttl": -5}, "option 'cache_ttl'"),
        (NLISkill, {"max_authorized_amount": 0}, "option 'max_authorized_amount'"),
        (DiscoverySkill, {"intents": [{"intent": ""}]}, "option 'intents.0"),
    ],
)
def test_bad_skill_options_are_configuration_errors(skill, config, words):
    from robutler_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=words.replace("(", r"\(")):
        skill({"platform_url": "http://127.0.0.1:9", **config})


def test_a_skill_without_a_platform_is_a_configuration_error(monkeypatch):
    from robutler_core.errors import ConfigurationError

    monkeypatch.delenv("ROBUTLER_PLATFORM_URL", raising=False)
    with pytest.raises(ConfigurationError, match="set platform_url"):
        AuthSkill({}).check_configuration()
