"""The official openai client's model routes, over a real loopback socket, at both base URLs:
``/{agent}`` (the README's) and ``/v1``."""

import openai
import pytest

from robutler_core import Agent
from robutler_server import create_app
from robutler_server.testing import serve_in_thread


@pytest.fixture(scope="module")
def base_url():
    agents = [Agent("plain", model="test"), Agent("other", model="test"), Agent("private", model="test", scopes=["owner"])]
    with serve_in_thread(create_app(agents)) as url:
        yield url


def client(base_url, path):
    return openai.OpenAI(base_url=f"{base_url}/{path}", api_key="unused", max_retries=0)


def test_models_list_and_retrieve_at_the_agents_base_url(base_url):
    c = client(base_url, "plain")
    models = c.models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [("plain", "model", "robutler")]
    model = c.models.retrieve("plain")
    assert model.id == "plain" and model.object == "model" and model.created > 0
    # the model that models.list() returned is the one chat answers as
    assert c.chat.completions.create(model=model.id, messages=[{"role": "user", "content": "hi"}]).model == "plain"


def test_models_retrieve_on_v1(base_url):
    c = client(base_url, "v1")
    assert [m.id for m in c.models.list().data] == ["plain", "other"]
    model = c.models.retrieve("other")
    assert (model.id, model.object, model.owned_by) == ("other", "model", "robutler")


@pytest.mark.parametrize(("path", "model_id"), [("v1", "nobody"), ("plain", "other"), ("plain", "nobody")])
def test_an_unknown_model_is_404_model_not_found_naming_nothing_else(base_url, path, model_id):
    with pytest.raises(openai.NotFoundError) as error:
        client(base_url, path).models.retrieve(model_id)
    body = error.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model" and body["type"] == "not_found_error"
    assert body["message"] == f"model '{model_id}' does not exist on this server"


def test_a_model_the_caller_may_not_use_is_403(base_url):
    for path in ("v1", "private"):
        with pytest.raises(openai.PermissionDeniedError):
            client(base_url, path).models.retrieve("private")
    with pytest.raises(openai.PermissionDeniedError):
        client(base_url, "private").models.list()
