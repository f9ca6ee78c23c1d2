"""Discovery on the platform service: publishing intents (owners only) and finding agents by
what they do, by text search and by meaning (the real local MiniLM model)."""

from __future__ import annotations

import pytest

from robutler_server.testing import serve_in_thread
from robutler_skill_platform.service import create_service_app

INTENTS = [
    {"agent_id": "currency", "intent": "convert currencies", "description": "exchange rates between dollars, euros and yen", "url": "http://127.0.0.1:9001/currency"},
    {"agent_id": "poet", "intent": "write poems", "description": "sonnets and haiku on any subject", "url": "http://127.0.0.1:9002/poet"},
    {"agent_id": "poet", "intent": "rhyme words", "url": "http://127.0.0.1:9002/poet"},
]


async def publish(world, intents=INTENTS, key=None, **extra):
    async with world.client(key or world.owner_key) as client:
        return await client.post("/api/intents/create", json={"intents": intents, **extra})


async def discover(world, query, **body):
    async with world.client(world.payer_key) as client:
        response = await client.post("/api/discovery", json={"query": query, **body})
    assert response.status_code == 200, response.text
    return response.json()["results"]


@pytest.fixture
async def registered(world):
    for name in ("currency", "poet"):
        await world.store.register_agent(name, "olivia")
    return world


async def test_text_search_finds_the_agent_by_what_it_does(registered):
    assert (await publish(registered)).status_code == 200
    results = await discover(registered, "convert currencies")
    assert results["intents"][0]["intent"] == "convert currencies"
    assert [a["name"] for a in results["agents"]] == ["currency"]
    assert all(0 <= hit["similarity"] <= 1 for hit in results["intents"])
    assert results["agents"][0]["url"] == "http://127.0.0.1:9001/currency"
    only_intents = await discover(registered, "haiku", types=["intents"], limit=1)
    assert list(only_intents) == ["intents"] and only_intents["intents"][0]["intent"] == "write poems"


async def test_publishing_again_updates_and_replace_removes_the_rest(registered):
    await publish(registered)
    await publish(registered, [{"agent_id": "poet", "intent": "write poems", "description": "limericks"}], replace=True)
    results = await discover(registered, "limericks rhyme", types=["intents"])
    assert [(h["intent"], h["description"]) for h in results["intents"]] == [("write poems", "limericks")]


@pytest.mark.parametrize(
    "intents, status, words",
    [
        ([{"agent_id": "nobody", "intent": "x"}], 404, "no agent 'nobody'"),
        ([{"agent_id": "currency", "intent": "  "}], 400, "needs its text"),
    ],
)
async def test_bad_intents_are_refused(registered, intents, status, words):
    response = await publish(registered, intents)
    assert response.status_code == status and words in response.json()["error"]["message"]


async def test_only_the_owner_publishes_an_agents_intents(registered):
    response = await publish(registered, key=registered.payer_key)
    assert response.status_code == 403


@pytest.mark.parametrize("body, param", [({"types": ["people"]}, "types"), ({"limit": 0}, "limit"), ({"query": " "}, "query")])
async def test_bad_queries_are_400(registered, body, param):
    async with registered.client(registered.payer_key) as client:
        response = await client.post("/api/discovery", json={"query": "poems", **body})
    assert response.status_code == 400 and response.json()["error"]["param"] == param


async def test_discovery_by_meaning_with_the_local_model(registered, platform_dsn):
    app = create_service_app(platform_dsn, issuer="https://platform.test", embedding_model="local/all-MiniLM-L6-v2")
    with serve_in_thread(app, startup_timeout=60) as url:
        registered.url = url
        assert (await publish(registered)).status_code == 200
        results = await discover(registered, "how many yen do I get for 100 dollars?")
        poems = await discover(registered, "a short verse about autumn leaves", types=["agents"])
    assert results["agents"][0]["name"] == "currency"
    assert results["intents"][0]["intent"] == "convert currencies"
    assert results["intents"][0]["similarity"] > results["intents"][-1]["similarity"]
    assert poems["agents"][0]["name"] == "poet"


async def test_the_discovery_skill_publishes_at_start_up_and_again_when_the_agents_file_is_reloaded(registered, tmp_path):
    import asyncio
    import textwrap

    from robutler_server import create_app
    from robutler_server.config import load_agents

    agents_file = tmp_path / "agents.yaml"

    def write(intent: str) -> None:
        agents_file.write_text(textwrap.dedent(f"""
            agents:
              - name: currency
                model: test
                skills:
                  discovery:
                    platform_url: "{registered.url}"
                    api_key: "{registered.owner_key}"
                    public_url: "http://127.0.0.1:9001"
                    intents: ["{intent}"]
        """))

    async def published() -> list[str]:
        results = await discover(registered, "convert exchange currencies money", types=["intents"])
        return [hit["intent"] for hit in results["intents"]]

    write("convert currencies")
    app = create_app(load_agents(str(agents_file)), reload_agents_file=agents_file)
    with serve_in_thread(app, startup_timeout=30):
        assert await published() == ["convert currencies"]
        write("exchange money")
        for _ in range(100):
            if await published() == ["exchange money"]:
                break
            await asyncio.sleep(0.1)
        assert await published() == ["exchange money"]  # the old intent was replaced
