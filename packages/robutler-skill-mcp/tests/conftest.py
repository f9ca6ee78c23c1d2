"""Fixtures: the test MCP server (``mcp_echo_server.py``) over stdio, Streamable HTTP and SSE."""

import importlib.util
import sys
from pathlib import Path

import pytest

from robutler_server.testing import serve_in_thread

ECHO_SERVER = Path(__file__).with_name("mcp_echo_server.py")


def _load_echo_server():
    spec = importlib.util.spec_from_file_location("mcp_echo_server", ECHO_SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


echo_server = sys.modules["mcp_echo_server"] = _load_echo_server()  # tests import it by name


@pytest.fixture(scope="module")
def http_server_url():
    with serve_in_thread(echo_server.build("http-echo").streamable_http_app()) as url:
        yield f"{url}/mcp"


@pytest.fixture(scope="module")
def sse_server_url():
    with serve_in_thread(echo_server.build("sse-echo").sse_app()) as url:
        yield f"{url}/sse"
