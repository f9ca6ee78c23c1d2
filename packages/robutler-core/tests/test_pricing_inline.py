"""Pricing a model call: the first time a process prices a model, in a worker thread (a pricing
plugin may load its data then); every later call on the event loop, without a thread hop."""

import threading

import pytest

from robutler_core import Agent, LLMSkill, hookimpl
from robutler_core.plugins import installed_plugins, price

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


class PricingPlugin:
    """A third-party pricing plugin: $1 per 1,000 prompt tokens, $2 per 1,000 completion
    tokens, for its own models only; records the thread of each call."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.threads = []

    @hookimpl
    def model_cost(self, model, usage):
        if not model.startswith(self.prefix):
            return None
        self.threads.append(threading.current_thread())
        return usage.get("prompt_tokens", 0) / 1000 + 2 * usage.get("completion_tokens", 0) / 1000


@pytest.fixture
def plugin(request):
    plugin = PricingPlugin(f"priced-{request.node.name}/")
    installed_plugins().register(plugin)
    yield plugin
    installed_plugins().unregister(plugin)


class Provider(LLMSkill):
    """A provider skill that prices through the plugins (it does not override usage_cost)."""

    async def chat_completion(self, messages, tools=None, **params):
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": dict(USAGE),
        }

    async def chat_completion_stream(self, messages, tools=None, **params):
        raise NotImplementedError


async def test_the_first_price_of_a_model_is_taken_in_a_thread_and_later_ones_inline(plugin):
    model = f"{plugin.prefix}m1"
    assert await price(model, USAGE) == pytest.approx(2.0)
    assert await price(model, USAGE) == pytest.approx(2.0)
    assert await price(model, {"prompt_tokens": 10, "completion_tokens": 0}) == pytest.approx(0.01)
    main = threading.current_thread()
    assert plugin.threads[0] is not main
    assert plugin.threads[1:] == [main, main]


async def test_an_agents_model_is_warmed_at_initialize_and_its_calls_priced_on_the_loop(plugin):
    provider = type("OwnProvider", (Provider,), {"model_prefixes": (plugin.prefix.rstrip("/"),)})
    agent = Agent("a", model=provider({"model": "m2"}))
    await agent.initialize()
    assert len(plugin.threads) == 1 and plugin.threads[0] is not threading.current_thread()
    for _ in range(3):
        context = agent.new_context([{"role": "user", "content": "hi"}], None, False)
        await agent.run([], context=context)
        [record] = context.usage_records
        assert record.metadata["cost_usd"] == pytest.approx(2.0)
    assert plugin.threads[1:] == [threading.current_thread()] * 3


async def test_a_model_no_plugin_knows_is_unpriced_and_a_failing_plugin_is_logged(plugin, caplog):
    assert await price("nobody-knows/this-model", USAGE) is None
    assert await price("nobody-knows/this-model", USAGE) is None

    class Failing:
        @hookimpl
        def model_cost(self, model, usage):
            raise RuntimeError("price list unreachable")

    failing = Failing()
    installed_plugins().register(failing)
    try:
        assert await price(f"{plugin.prefix}m3", USAGE) is None
        assert await price(f"{plugin.prefix}m3", USAGE) is None
    finally:
        installed_plugins().unregister(failing)
    assert "pricing priced-" in caplog.text and "price list unreachable" in caplog.text
