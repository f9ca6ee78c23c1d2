"""short_term_memory behind robutler-server, driven by the official openai client: the
conversation id as a header (default_headers / extra_headers) and as metadata in the body."""

import openai
import pytest

from robutler_core import Agent, Skill, hook
from robutler_server import create_app
from robutler_server.testing import serve_in_thread

from robutler_skill_memory.short_term import ShortTermMemorySkill

from memory_test_helpers import RecordingModel


class BearerIdentity(Skill):
    """A test auth skill: the caller is the bearer token (the client's api_key)."""

    @hook("on_connection", priority=10)
    def authenticate(self, context):
        context.peer_user_id = context.headers.get("authorization", "").removeprefix("Bearer ") or None


@pytest.fixture(scope="module")
def served():
    model = RecordingModel()
    agent = Agent("memo", model=model, skills={"auth": BearerIdentity(), "short_term_memory": ShortTermMemorySkill()})
    with serve_in_thread(create_app([agent])) as url:
        yield url, model


def client(url, user, **options):
    return openai.OpenAI(base_url=f"{url}/memo", api_key=user, max_retries=0, **options)


def said(model):
    return [(m["role"], m["content"]) for m in model.seen[-1] if m["role"] != "system"]


def test_header_continues_a_conversation_and_another_id_does_not(served):
    url, model = served
    alice = client(url, "alice", default_headers={"X-Conversation-Id": "trip"})
    alice.chat.completions.create(model="memo", messages=[{"role": "user", "content": "I fly to Oslo"}])
    answer = alice.chat.completions.create(model="memo", messages=[{"role": "user", "content": "where to?"}])
    assert answer.choices[0].message.content == 'TestModel received: "where to?"'
    assert said(model) == [
        ("user", "I fly to Oslo"), ("assistant", 'TestModel received: "I fly to Oslo"'), ("user", "where to?"),
    ]
    alice.chat.completions.create(
        model="memo", messages=[{"role": "user", "content": "new topic"}],
        extra_headers={"X-Conversation-Id": "other"},
    )
    assert said(model) == [("user", "new topic")]


def test_metadata_conversation_id_streamed_and_users_do_not_share(served):
    url, model = served
    bob, carol = client(url, "bob"), client(url, "carol")
    metadata = {"conversation_id": "shared-id"}
    stream = bob.chat.completions.create(
        model="memo", messages=[{"role": "user", "content": "bob's note"}], metadata=metadata, stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == 'TestModel received: "bob\'s note"'
    carol.chat.completions.create(model="memo", messages=[{"role": "user", "content": "hi"}], metadata=metadata)
    assert said(model) == [("user", "hi")]
    bob.chat.completions.create(model="memo", messages=[{"role": "user", "content": "and?"}], metadata=metadata)
    assert said(model)[0] == ("user", "bob's note")


def test_conflicting_ids_are_a_400_in_openai_s_envelope(served):
    url, _ = served
    with pytest.raises(openai.BadRequestError) as raised:
        client(url, "dave").chat.completions.create(
            model="memo", messages=[{"role": "user", "content": "x"}],
            metadata={"conversation_id": "a"}, extra_headers={"X-Conversation-Id": "b"},
        )
    assert raised.value.body["code"] == "invalid_conversation_id"
    assert raised.value.body["param"] == "metadata.conversation_id"
