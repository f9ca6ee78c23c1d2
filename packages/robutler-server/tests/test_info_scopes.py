"""Routes that describe agents show only what the caller's scope admits (issue 14, "nothing leaks").

The ``on_connection`` hooks run for ``GET /{agent}``, ``GET /agents`` and the model routes as
they do for chat: here a bearer token makes the caller the owner.
"""

import httpx
import pytest

from robutler_core import Agent, Skill, hook, http, tool
from robutler_core.errors import AuthenticationError
from robutler_server import create_app

OWNER = {"authorization": "Bearer owner-token"}
SECRET = "SECRET-PROMPT"


class BearerAuth(Skill):
    @hook("on_connection", priority=1)
    def authenticate(self, context):
        if context.headers.get("authorization") == OWNER["authorization"]:
            context.auth_scope = "owner"

    @tool(scope="owner")
    def wipe(self) -> str:
        """Owner-only tool."""
        return "wiped"

    @tool
    def hello(self) -> str:
        """Anyone's tool."""
        return "hi"


class Refuses(Skill):
    calls = 0

    @hook("on_connection")
    def refuse(self, context):
        Refuses.calls += 1
        raise AuthenticationError("missing or invalid token")


@pytest.fixture
async def client():
    agents = [
        Agent("public", f"{SECRET} public", model="test", skills={"auth": BearerAuth()}),
        Agent("private", f"{SECRET} private", model="test", skills={"auth": BearerAuth()}, scopes=["owner"]),
        Agent("locked", f"{SECRET} locked", model="test", skills={"refuse": Refuses()}),
    ]
    transport = httpx.ASGITransport(app=create_app(agents))
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as c:
        yield c


async def test_an_anonymous_caller_sees_only_public_agents_and_no_instructions(client):
    for path in ("/agents", "/v1/models", "/public", "/public/models"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert SECRET not in response.text and "private" not in response.text, path
        assert "locked" not in response.text, path
    agents = (await client.get("/agents")).json()["data"]
    assert [a["name"] for a in agents] == ["public"]
    assert [t["function"]["name"] for t in agents[0]["tools"]] == ["hello"]
    assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]] == ["public"]


async def test_the_owner_sees_the_owner_scoped_agent_and_the_instructions(client):
    agents = (await client.get("/agents", headers=OWNER)).json()["data"]
    assert [a["name"] for a in agents] == ["public", "private"]
    assert agents[1]["instructions"] == f"{SECRET} private"
    assert sorted(t["function"]["name"] for t in agents[0]["tools"]) == ["hello", "wipe"]
    assert [m["id"] for m in (await client.get("/v1/models", headers=OWNER)).json()["data"]] == ["public", "private"]
    info = await client.get("/private", headers=OWNER)
    assert info.status_code == 200 and info.json()["instructions"] == f"{SECRET} private"


@pytest.mark.parametrize("path", ["/private", "/private/models", "/private/models/private", "/v1/models/private"])
async def test_an_agent_the_caller_may_not_use_is_403_as_on_the_chat_route(client, path):
    response = await client.get(path)
    chat = await client.post("/private/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == chat.status_code == 403
    assert response.json()["error"]["code"] == "scope_not_allowed"
    assert SECRET not in response.text


async def test_on_connection_hooks_run_for_the_info_routes(client):
    before = Refuses.calls
    response = await client.get("/locked")
    assert response.status_code == 401 and response.json()["error"]["message"] == "missing or invalid token"
    assert Refuses.calls == before + 1
    await client.get("/agents")
    assert Refuses.calls == before + 2


@pytest.mark.parametrize(("method", "path", "body", "code"), [
    ("GET", "/nobody", None, "agent_not_found"),
    ("GET", "/nobody/models", None, "agent_not_found"),
    ("POST", "/nobody/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "agent_not_found"),
    ("GET", "/v1/models/nobody", None, "model_not_found"),
    ("POST", "/v1/chat/completions", {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}, "model_not_found"),
])
async def test_a_404_names_no_agent(client, method, path, body, code):
    response = await client.request(method, path, json=body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == code
    assert "'nobody' does not exist on this server" in response.text
    for name in ("public", "private", "locked"):
        assert name not in response.text


class Pages(Skill):
    @http("/public-page")
    def public_page(self) -> dict:
        return {"page": "public"}

    @http("/owner-page", scope="owner")
    def owner_page(self) -> dict:
        return {"page": "owner"}


async def test_the_openapi_document_names_no_owner_only_agent_or_route():
    app = create_app([
        Agent("front", model="test", skills={"pages": Pages()}),
        Agent("hidden-desk", model="test", scope="owner", skills={"pages": Pages()}),
    ])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        document = (await client.get("/openapi.json")).text
        assert "/front/public-page" in document
        assert "owner-page" not in document and "hidden-desk" not in document
        # Left out of the document, the routes still serve whom their scope admits.
        assert (await client.get("/front/owner-page")).status_code == 403
