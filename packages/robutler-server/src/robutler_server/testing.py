"""Run an app on a loopback port for tests: ``with serve_in_thread(app) as base_url: ...``."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app: Any, startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields ``http://127.0.0.1:PORT``.

    The app's lifespan runs as under ``robutler serve`` (agents are initialised before the first
    request and closed at the end); RuntimeError when the server does not start (a failing
    start-up) within ``startup_timeout`` seconds.
    """
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    exit_status: list[Any] = []

    def run() -> None:
        try:
            server.run()
        except SystemExit as exc:  # uvicorn exits when start-up fails (details in its log)
            exit_status.append(exc.code)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            status = f" (exit status {exit_status[0]})" if exit_status else ""
            raise RuntimeError(f"uvicorn did not start{status}; see its log")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
