"""Latency one NLI hop adds: an agent's ``nli_tool`` calling a specialist, against calling the
same specialist directly over HTTP, in one run.

Sets up, in this process: the platform service on an embedded PostgreSQL (a temporary data
directory, or ``--dsn``), a paid specialist agent (``auth`` + ``payments``, the offline ``test``
model) served by uvicorn on a loopback port, and a caller agent with the ``nli`` skill. Then,
alternating, ``--rounds`` times ``--requests`` each way:

- ``direct``: ``POST /specialist/chat/completions`` (streamed) with a payment token minted for
  the specialist, as the nli skill sends it;
- ``nli``: the caller's ``nli_tool`` (discovery excluded): delegate a child token, the same
  streamed call, wait for the specialist's settle, release the child.

Prints one JSON line: ``{"direct_ms", "nli_ms", "added_ms"}`` (p50s), then the p99s on stderr.

    python benchmarks/bench_nli.py [--requests 50] [--rounds 3] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402

from robutler_core import Agent  # noqa: E402
from robutler_server import create_app  # noqa: E402
from robutler_server.testing import serve_in_thread  # noqa: E402
from robutler_skill_platform import AuthSkill, NLISkill, PaymentSkill  # noqa: E402
from robutler_skill_platform.money import to_micros  # noqa: E402
from robutler_skill_platform.service import create_service_app, open_store  # noqa: E402

QUESTION = "How many euros for 100 dollars?"


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(arguments: argparse.Namespace) -> None:
    data_dir = None
    if arguments.dsn is None:
        data_dir = tempfile.mkdtemp(prefix="robutler-bench-nli-")
        os.environ["ROBUTLER_DATA_DIR"] = data_dir
    store = await open_store(arguments.dsn)
    try:
        suffix = str(int(time.time() * 1000))
        owner = await store.create_user(f"owner-{suffix}")
        payer = await store.create_user(f"payer-{suffix}")
        specialist, caller = f"specialist-{suffix}", f"caller-{suffix}"
        await store.register_agent(specialist, owner["id"])
        await store.register_agent(caller, owner["id"])
        await store.add_credits(payer["id"], to_micros("1000"))
        owner_key = (await store.create_key(owner["id"]))["key"]
        payer_key = (await store.create_key(payer["id"]))["key"]

        with serve_in_thread(create_service_app(arguments.dsn), startup_timeout=60) as platform:
            paid = {
                "auth": AuthSkill({"platform_url": platform, "api_key": owner_key}),
                "payments": PaymentSkill({"platform_url": platform, "api_key": owner_key, "per_request_lock": "0.01"}),
            }
            with serve_in_thread(create_app([Agent(specialist, "Answer.", model="test", skills=paid)])) as server:
                url = f"{server}/{specialist}"
                nli = NLISkill({"platform_url": platform, "api_key": owner_key, "agents": {specialist: url},
                                "allowlist": ["127.0.0.1"]})
                agent = Agent(caller, "Delegate.", model="test", skills={"nli": nli})
                await agent.initialize()
                async with httpx.AsyncClient(timeout=30) as http:

                    async def direct() -> float:
                        token = (await store.mint_token(payer["id"], to_micros("0.10"), specialist))["token"]
                        started = time.perf_counter()
                        body = {"model": specialist, "messages": [{"role": "user", "content": QUESTION}], "stream": True}
                        async with http.stream("POST", f"{url}/chat/completions", json=body,
                                               headers={"X-Payment-Token": token, "Authorization": f"Bearer {payer_key}"}) as r:
                            async for _ in r.aiter_lines():
                                pass
                        return time.perf_counter() - started

                    async def hop() -> float:
                        context = agent.new_context([{"role": "user", "content": "x"}], None, False)
                        context.payment_token = (await store.mint_token(payer["id"], to_micros("1"), caller))["token"]
                        started = time.perf_counter()
                        answer = await nli._call(context, specialist, QUESTION, 0.10)
                        elapsed = time.perf_counter() - started
                        assert answer.startswith("TestModel"), answer
                        return elapsed

                    timings: dict[str, list[float]] = {"direct": [], "nli": []}
                    await direct(), await hop()  # warm up
                    for _ in range(arguments.rounds):
                        for name, run in (("direct", direct), ("nli", hop)):
                            for _ in range(arguments.requests):
                                timings[name].append(await run())
                await agent.close()
    finally:
        await store.database.close()
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    direct_ms = statistics.median(timings["direct"]) * 1000
    nli_ms = statistics.median(timings["nli"]) * 1000
    print(json.dumps({"direct_ms": round(direct_ms, 2), "nli_ms": round(nli_ms, 2), "added_ms": round(nli_ms - direct_ms, 2)}))
    print(json.dumps({"direct_p99_ms": round(p(timings["direct"], 0.99) * 1000, 2),
                      "nli_p99_ms": round(p(timings["nli"], 0.99) * 1000, 2),
                      "requests_each": len(timings["nli"])}), file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="requests per round and way")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", help="a PostgreSQL server instead of the embedded one")
    asyncio.run(main(parser.parse_args()))
