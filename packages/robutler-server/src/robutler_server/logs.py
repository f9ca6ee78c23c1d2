"""Logging of ``robutler serve``: one format for the server's, the skills' and uvicorn's lines,
each carrying the ``X-Request-ID`` of the request it belongs to.

``text`` (the default): ``INFO:     message [request_id=...]`` (the tag only inside a request).
``json``: one JSON object per line (python-json-logger): ``time`` (ISO 8601), ``level``,
``logger``, ``message``, ``request_id`` (``null`` outside a request) and ``exc_info`` (the
traceback) when there is one.
"""

from __future__ import annotations

import logging
from typing import Any

from asgi_correlation_id import correlation_id
from pythonjsonlogger.core import RESERVED_ATTRS

FORMATS = ("text", "json")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the current request's ``X-Request-ID`` or ``None``) and
    with ``tag``, ``request_tag`` (``" [request_id=...]"`` or ``""``) to every record."""

    def __init__(self, tag: bool = True) -> None:
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = correlation_id.get()
        record.request_id = request_id
        if self.tag:
            record.request_tag = f" [request_id={request_id}]" if request_id else ""
        return True


def logging_config(level: str = "info", log_format: str = "text", access_log: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (also uvicorn's ``log_config``, so that every worker
    applies it): one stderr handler on the root logger with the :class:`RequestIdFilter`; the
    ``uvicorn`` loggers propagate to it (``uvicorn.access``, one line per request, only with
    ``access_log``). Raises ValueError for a format not in :data:`FORMATS`."""
    if log_format not in FORMATS:
        raise ValueError(f"log format '{log_format}' is not one of {', '.join(FORMATS)}")
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],  # uvicorn's ANSI-coloured copy
        }
    else:
        formatter = {"format": "%(levelname)s:     %(message)s%(request_tag)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter, "tag": log_format == "text"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                "formatter": "default", "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            **{name: {"handlers": [], "propagate": True, "level": level.upper()} for name in ("uvicorn", "uvicorn.error")},
            "uvicorn.access": {"handlers": [], "propagate": access_log, "level": level.upper()},
        },
    }
