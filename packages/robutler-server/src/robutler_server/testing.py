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


def check_response_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Check that ``events`` (parsed Responses stream events, in order) are well formed and
    return the final ``response``; AssertionError naming the first problem otherwise.

    Well formed: ``sequence_number`` starts at 0 and increases by one; ``response.created``
    then ``response.in_progress`` open the stream; each ``response.output_item.added`` has
    one ``response.output_item.done`` at its ``output_index`` (likewise content parts, and
    ``response.output_text.done`` / ``response.function_call_arguments.done`` once per item),
    deltas arrive only for open items; the last event is ``response.completed``,
    ``response.incomplete`` or ``response.failed`` and nothing follows it; a completed or
    incomplete response carries ``usage`` and the output items, as their ``done`` events gave them.
    """
    assert events, "no events"
    assert [e["sequence_number"] for e in events] == list(range(len(events))), "sequence numbers"
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"], events[:2]
    last = events[-1]
    assert last["type"] in ("response.completed", "response.incomplete", "response.failed"), last["type"]
    open_items: dict[int, dict[str, Any]] = {}
    done_items: dict[int, dict[str, Any]] = {}
    open_parts: set[tuple[int, int]] = set()
    for event in events[2:-1]:
        kind, index = event["type"], event.get("output_index")
        assert kind not in ("response.created", "response.in_progress", "response.completed"), kind
        if kind == "response.output_item.added":
            assert index not in open_items and index not in done_items, f"item {index} added twice"
            open_items[index] = event["item"]
        elif kind == "response.output_item.done":
            assert index in open_items, f"item {index} done but not open"
            assert not any(i == index for i, _ in open_parts), f"item {index} done with a part open"
            done_items[index] = event["item"]
            del open_items[index]
        elif kind == "response.content_part.added":
            assert index in open_items, f"part of item {index} that is not open"
            open_parts.add((index, event["content_index"]))
        elif kind == "response.content_part.done":
            open_parts.remove((index, event["content_index"]))
        elif kind in ("response.output_text.delta", "response.output_text.done"):
            assert (index, event["content_index"]) in open_parts, f"{kind} outside an open part"
        elif kind.startswith("response.function_call_arguments."):
            assert open_items.get(index, {}).get("type") == "function_call", f"{kind} outside a function call"
    assert not open_items and not open_parts, f"never done: items {sorted(open_items)}"
    response = last["response"]
    if last["type"] != "response.failed":
        assert response["usage"] is not None, "no usage"
        assert response["output"] == [done_items[i] for i in sorted(done_items)], "output differs from the items"
    return response
