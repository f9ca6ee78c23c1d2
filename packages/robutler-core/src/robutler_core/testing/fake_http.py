"""The base of the fake provider servers: a threaded HTTP server on a loopback port that
answers from a queue of scripted responses and records every request. Standard library only.

Subclasses (:class:`~robutler_core.testing.fake_openai.FakeOpenAIServer`, the Anthropic fake
of robutler-skill-anthropic) give a :class:`FakeHandler` subclass that speaks their wire
format.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass
class RecordedRequest:
    """One request a fake received; ``headers`` names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a timeout test) is expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHandler(BaseHTTPRequestHandler):
    """Request handler with JSON and server-sent-event helpers; ``self.fake`` is the server."""

    protocol_version = "HTTP/1.1"
    fake: FakeServer[Any]

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def read_json(self) -> Any:
        """The request body parsed as JSON (``{}`` when empty); records the request."""
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.fake.record(RecordedRequest(self.command, self.path, self.lower_headers(), body))
        return body

    def lower_headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def start_events(self, headers: dict[str, str] | None = None) -> None:
        """Start a ``text/event-stream`` answer (the connection closes at its end)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True

    def send_event(self, data: Any, event: str | None = None) -> None:
        """One server-sent event: ``event: NAME`` (when given) and ``data: JSON``."""
        text = data if isinstance(data, str) else json.dumps(data)
        prefix = f"event: {event}\n" if event else ""
        self.wfile.write(f"{prefix}data: {text}\n\n".encode())
        self.wfile.flush()


class FakeServer(Generic[R]):
    """Serves ``handler`` on ``127.0.0.1`` at a free port, in a background thread.

    Use as a context manager. :meth:`enqueue` scripts the next answers (type ``R``, the
    subclass's response type); :attr:`requests` holds what was received.
    """

    handler: type[FakeHandler] = FakeHandler

    def __init__(self) -> None:
        self.responses: deque[R] = deque()
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        handler = type(self.handler.__name__, (self.handler,), {"fake": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, response: R) -> None:
        """Queue the answer to the next request."""
        with self._lock:
            self.responses.append(response)

    def next_response(self) -> R | None:
        with self._lock:
            return self.responses.popleft() if self.responses else None

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _RawAnswerHandler(FakeHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.read_json()
        fake: RawAnswerServer = self.fake  # type: ignore[attr-defined]
        if fake.events:
            self.start_events()
            self.wfile.write(fake.body)
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(fake.body)))
        self.end_headers()
        self.wfile.write(fake.body)


class RawAnswerServer(FakeServer[bytes]):
    """An upstream that breaks its wire format: answers every POST with status 200 and the
    raw bytes ``body``, as ``application/json``, or as a ``text/event-stream`` when ``events``
    is set. For testing that a provider skill turns an answer that is not what its API
    promises into :class:`~robutler_core.errors.UpstreamError` (502)."""

    handler = _RawAnswerHandler

    def __init__(self, body: bytes, events: bool = False) -> None:
        super().__init__()
        self.body = body
        self.events = events
