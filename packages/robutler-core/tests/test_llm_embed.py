"""``LLMSkill.embed`` is part of the provider interface: a provider without embeddings
refuses with a ConfigurationError naming itself; one with them overrides it."""

import pytest

from robutler_core import LLMSkill
from robutler_core.errors import ConfigurationError
from robutler_core.testing import TestModel


class ChatOnly(LLMSkill):
    model_prefixes = ("chatonly",)

    async def chat_completion(self, messages, tools=None, **params):  # pragma: no cover
        raise NotImplementedError

    async def chat_completion_stream(self, messages, tools=None, **params):  # pragma: no cover
        yield {}


class Counting(ChatOnly):
    """Embeds a text as [its length, its word count]."""

    async def embed(self, texts, model=None):
        texts = [texts] if isinstance(texts, str) else texts
        return [[float(len(t)), float(len(t.split()))] for t in texts]


async def test_a_provider_without_embeddings_raises_a_configuration_error_naming_it():
    with pytest.raises(ConfigurationError, match=r"^ChatOnly has no embeddings"):
        await ChatOnly({"model": "m"}).embed(["text"])
    with pytest.raises(ConfigurationError, match=r"^TestModel has no embeddings"):
        await TestModel().embed("text", model="any")


async def test_a_provider_with_embeddings_overrides_it():
    assert await Counting().embed(["ab c", "d"]) == [[4.0, 2.0], [1.0, 1.0]]
    assert await Counting().embed("one") == [[3.0, 1.0]]
