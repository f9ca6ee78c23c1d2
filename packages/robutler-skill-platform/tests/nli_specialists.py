"""Agents for the NLI tests, served in their own process:

    python nli_specialists.py PORT PLATFORM_URL [AGENT ...]   (the owner's key in $ROBUTLER_API_KEY)

serves the named agents (default: all but the coordinator). Agents (each with ``auth``,
``payments`` and ``discovery`` publishing its intents):

- ``coordinator``: its model asks ``discover_agents`` for "convert currencies", then calls the
  best agent found through ``nli_tool`` (0.10 dollars authorised), then answers with its reply.

- ``currency``: "convert currencies"; its model calls ``convert`` (priced 0.02) and answers.
- ``poet``: "write poems"; its model calls ``compose`` (priced 0.01) and answers.
- ``pricey``: its model calls ``appraise``, priced 0.50: more than any caller authorises.
- ``slow``: never answers (until the caller hangs up).
- ``ping`` and ``pong``: each asks the other through NLI, for ever if nothing stopped them.

They are built in code (an agents file cannot declare priced tools) and served by
``robutler_server.create_app`` under uvicorn, as ``robutler serve`` does.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn

from robutler_core import Agent, Skill, tool
from robutler_core.testing.chunks import finish_chunks, text_chunks, tool_call_chunks
from robutler_core.skill import LLMSkill
from robutler_core.wire import ChunkAssembler
from robutler_server import create_app
from robutler_skill_platform import AuthSkill, DiscoverySkill, NLISkill, PaymentSkill, pricing


class Currency(Skill):
    @tool
    @pricing(credits_per_call=0.02, reason="exchange rates")
    def convert(self, amount: float, source: str, target: str) -> str:
        """Convert an amount between currencies."""
        return f"{amount} {source} is {amount * 0.9:.2f} {target}"


class Poetry(Skill):
    @tool
    @pricing(credits_per_call=0.01)
    def compose(self, subject: str) -> str:
        """Write a short poem."""
        return f"Roses and {subject}"


class Appraisal(Skill):
    @tool
    @pricing(credits_per_call=0.50)
    def appraise(self, item: str) -> str:
        """Appraise an item."""
        return f"{item} is priceless"


class Silent(LLMSkill):
    """A model that never answers."""

    model_prefixes = ("silent",)

    async def chat_completion(self, messages, tools=None, **params):
        await asyncio.Event().wait()

    async def chat_completion_stream(self, messages, tools=None, **params):
        await asyncio.Event().wait()
        yield {}


class TurnModel(LLMSkill):
    """A model whose answer to ``messages`` is ``self._turn(messages)``: a list of chunks."""

    async def chat_completion(self, messages, tools=None, **params):
        assembler = ChunkAssembler()
        for chunk in self._turn(messages):
            assembler.add(chunk)
        return assembler.completion(model=self.model or "turns")

    async def chat_completion_stream(self, messages, tools=None, **params):
        for chunk in self._turn(messages):
            yield chunk


class Relay(TurnModel):
    """A model that asks ``peer`` (through ``nli_tool``) what it was asked, then answers with
    what came back."""

    model_prefixes = ("relay",)

    def __init__(self, peer: str):
        super().__init__({"model": "relay"})
        self.peer = peer

    def _turn(self, messages):
        if messages[-1]["role"] == "tool":
            return text_chunks(f"{self.peer} said: {messages[-1]['content']}") + finish_chunks("stop")
        arguments = {"agent": self.peer, "message": "ping?", "authorized_amount": 0.05}
        return tool_call_chunks([("nli_tool", arguments)]) + finish_chunks("tool_calls")


class Planner(TurnModel):
    """The coordinator's model: discover, delegate to the best match, answer; each call costs
    0.001 dollars."""

    model_prefixes = ("planner",)

    def __init__(self):
        super().__init__({"model": "planner"})

    async def usage_cost(self, usage):
        return 0.001

    def _turn(self, messages):
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        tool_results = [m for m in messages if m["role"] == "tool"]
        if not tool_results:
            call = ("discover_agents", {"query": "convert currencies"})
        elif len(tool_results) == 1:
            best = json.loads(tool_results[0]["content"])[0]["name"]
            call = ("nli_tool", {"agent": best, "message": "100 USD in EUR?", "authorized_amount": 0.10})
        else:
            return text_chunks(f"The specialist says: {tool_results[-1]['content']}") + finish_chunks("stop", usage=usage)
        return tool_call_chunks([call]) + finish_chunks("tool_calls", usage=usage)


def agents(port: int, platform_url: str) -> list[Agent]:
    public_url = f"http://127.0.0.1:{port}"

    def skills(intents, **extra):
        return {
            "auth": AuthSkill({"platform_url": platform_url}),
            "payments": PaymentSkill({"platform_url": platform_url, "per_request_lock": "0.05"}),
            "discovery": DiscoverySkill({"platform_url": platform_url, "public_url": public_url, "intents": intents}),
            **extra,
        }

    relay_nli = {"agents": {"ping": f"{public_url}/ping", "pong": f"{public_url}/pong"}, "allowlist": ["127.0.0.1"]}
    return [
        Agent("coordinator", "Coordinate.", model=Planner(), skills={
            **skills(["coordinate specialists"]),
            "nli": NLISkill({"platform_url": platform_url, "allowlist": ["127.0.0.1"]}),
        }),
        Agent("currency", "Convert currencies.", model="test", skills=skills(
            [{"intent": "convert currencies", "description": "exchange rates between dollars, euros and yen"}],
            currency=Currency())),
        Agent("poet", "Write poems.", model="test", skills=skills(["write poems"], poetry=Poetry())),
        Agent("pricey", "Appraise.", model="test", skills=skills(["appraise antiques"], appraisal=Appraisal())),
        Agent("slow", "Think.", model=Silent({"model": "silent"}), skills=skills(["think slowly"])),
        Agent("ping", "Relay.", model=Relay("pong"), skills=skills(["ping"], nli=NLISkill({"platform_url": platform_url, **relay_nli}))),
        Agent("pong", "Relay.", model=Relay("ping"), skills=skills(["pong"], nli=NLISkill({"platform_url": platform_url, **relay_nli}))),
    ]


if __name__ == "__main__":
    port, platform, names = int(sys.argv[1]), sys.argv[2], set(sys.argv[3:])
    served = [a for a in agents(port, platform) if (a.name in names if names else a.name != "coordinator")]
    uvicorn.run(create_app(served), host="127.0.0.1", port=port, log_level="warning")
