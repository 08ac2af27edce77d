"""JSON log lines carrying the request id of the request (or task) that wrote them."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import pydantic_core

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "color_message",
}
_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # Stamped when the record is made, inside the request's context; a handler may format it
    # later, elsewhere.
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id_var.get()
    return record


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # pydantic-core's encoder: every request writes an access line, and it takes a quarter
        # of the time json's does (datetimes come out in ISO 8601, anything else unknown as str).
        return pydantic_core.to_json(line, fallback=str).decode()


def configure_logging(level: str = "INFO") -> None:
    logging.setLogRecordFactory(_record_with_request_id)
    # A line carries none of the thread, process or caller a record would otherwise look up
    # each time it is made (the logging HOWTO's "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own handlers would print a second, non-JSON line for every event.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Each request is logged once, by our middleware (with its request id and route): uvicorn
    # writes its access line only while this logger has a handler, here or above it.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
