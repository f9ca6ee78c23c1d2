"""How ``robutler serve`` runs uvicorn: one process or ``--workers N``, logging, and shutdown.

- One worker: uvicorn serves the app built by the command on the sockets it bound.
- ``--workers N``: uvicorn's process supervisor starts N processes sharing the bound sockets;
  each rebuilds the app by running the ``serve`` command's own code with the same parameters
  (:func:`worker_app`, a uvicorn factory), and metrics go to a shared
  ``PROMETHEUS_MULTIPROC_DIR`` (:func:`prepare_multiprocess_metrics`). The supervisor restarts
  a worker that dies.
- SIGTERM (or SIGINT): uvicorn stops accepting, lets requests and streams in flight finish up
  to ``--graceful-timeout`` seconds, cancels the rest (their ``finalize_connection`` still
  runs: the app's lifespan waits for them before closing the agents), closes every agent and
  the process exits with status 0. Recent uvicorn re-raises the signal after its graceful
  shutdown; :func:`run` ignores that SIGTERM so it does not become the exit status (with
  workers, the supervisor passes SIGTERM on to each worker and exits 0 once they are done).
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import pickle
import shutil
import signal
import socket
import tempfile
from typing import Any

from .logs import logging_config

WORKER_PARAMETERS = "ROBUTLER_SERVE_PARAMETERS"
"""Environment variable giving a worker the ``serve`` command's parameters."""

_built: list[Any] = []


def prepare_multiprocess_metrics() -> None:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory (removed at exit) unless it is
    set; call before ``prometheus_client`` is imported."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="robutler-metrics-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def building_worker_app(app: Any) -> bool:
    """In a worker rebuilding its app (:func:`worker_app`): keep ``app`` and return ``True``,
    so that the ``serve`` command stops before binding; ``False`` otherwise."""
    if not os.environ.get(WORKER_PARAMETERS) or not _building:
        return False
    _built.append(app)
    return True


_building = False


def worker_app() -> Any:
    """The app of one worker (uvicorn factory ``robutler_server.serving:worker_app``): the
    ``serve`` command run with the parent's parameters, up to its app."""
    global _building
    from .cli import serve

    parameters = pickle.loads(base64.b64decode(os.environ[WORKER_PARAMETERS]))
    _building = True
    try:
        serve.callback(**parameters)  # type: ignore[misc]
    finally:
        _building = False
    return _built.pop()


def run(
    app: Any,
    sockets: list[socket.socket],
    *,
    parameters: dict[str, Any],
    log_level: str,
    log_format: str,
    access_log: bool,
    workers: int,
    graceful_timeout: float,
) -> None:
    """Serve ``app`` on ``sockets`` until SIGTERM or SIGINT (see the module); ``parameters`` are
    the ``serve`` command's, for the workers to rebuild the app."""
    import uvicorn

    common: dict[str, Any] = {
        "log_config": logging_config(log_level, log_format, access_log), "log_level": log_level,
        "access_log": access_log, "lifespan": "on", "timeout_graceful_shutdown": graceful_timeout,
    }
    if workers <= 1:
        _serve(uvicorn.Config(app, **common), sockets=sockets)
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[WORKER_PARAMETERS] = base64.b64encode(pickle.dumps(parameters)).decode()
    config = uvicorn.Config("robutler_server.serving:worker_app", factory=True, workers=workers, **common)
    logging.getLogger("robutler_server").info("starting %d workers", workers)
    signal.signal(signal.SIGTERM, _ignore)
    Multiprocess(config, sockets=sockets).run()


def _serve(config: Any, sockets: list[socket.socket]) -> None:
    import uvicorn

    signal.signal(signal.SIGTERM, _ignore)  # what uvicorn re-raises after a graceful shutdown
    uvicorn.Server(config).run(sockets=sockets)


def _ignore(signum: int, frame: Any) -> None:
    """The handler uvicorn restores and re-raises SIGTERM into once its shutdown is done."""


TRACING_VARIABLES = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
"""Any of these set (and the ``otel`` extra installed) turns tracing on in ``robutler serve``."""


def extra_tracing_configured() -> bool:
    """Whether ``robutler serve`` exports traces: the ``otel`` extra is installed
    (:func:`robutler_server.tracing.extra_installed`) and one of :data:`TRACING_VARIABLES` is set."""
    from .tracing import extra_installed

    return any(os.environ.get(name) for name in TRACING_VARIABLES) and extra_installed()


def configure_tracing() -> None:
    """The SDK configured from the ``OTEL_*`` variables
    (:func:`robutler_server.tracing.configure_from_environment`)."""
    from .tracing import configure_from_environment

    configure_from_environment()
