"""``import robutler_server`` leaves what only serving needs to when it is first used: the
JSON Schema checker (a request with tools), prometheus-client (an app's metrics), limits (an
app's rate-limit storage) and the Responses API's modules (installed by ``create_app``)."""

import subprocess
import sys

DEFERRED = ("jsonschema", "prometheus_client", "limits", "robutler_server.responses", "robutler_server.responses_store",
            "robutler_server.responses_wire", "robutler_server.responses_schemas", "robutler_server.reload")


def test_import_defers_what_serving_needs():
    code = "import sys, robutler_server; print(' '.join(m for m in %r if m in sys.modules))" % (DEFERRED,)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_create_app_still_checks_schemas_and_counts():
    code = (
        "import asyncio, httpx\n"
        "from robutler_core import Agent\n"
        "from robutler_server import create_app\n"
        "app = create_app([Agent('a', model='test')])\n"
        "async def main():\n"
        "    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url='http://t') as c:\n"
        "        tool = {'type': 'function', 'function': {'name': 'f', 'parameters': {'type': 'bogus'}}}\n"
        "        r = await c.post('/a/chat/completions', json={'messages': [{'role': 'user', 'content': 'x'}], 'tools': [tool]})\n"
        "        print(r.status_code, r.json()['error']['param'])\n"
        "        await c.post('/a/chat/completions', json={'messages': [{'role': 'user', 'content': 'x'}]})\n"
        "        print('robutler_requests_total{agent=\"a\",status=\"200\",stream=\"false\"} 1.0' in (await c.get('/metrics')).text)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["400", "tools.0.function.parameters", "True"]
