"""Operator logs: one line per request and one per warning or error, as JSON or plain text.

:func:`configure_logging` gives the root logger one stderr handler (JSON lines by
``python-json-logger``, or text) and routes uvicorn's own loggers through it, so that every
line of the process has one shape. :func:`log_access` writes the access line of a request
(``service.access``: method, path, status, latency in ms, the served model version, and for a
422 the reason its handler left in ``request.state.error``) at INFO,
ERROR for a 5xx; every line logged while a request runs carries its ``request_id``
(:data:`request_id_var`, set by :mod:`service.observe`).

What the access line costs ``/recommend`` is measured by ``bench/access_log.py``; to keep
it small the records skip what no line shows: the caller's frame (the access record is made
directly), thread and process names (``logging.logThreads`` and friends, the logging HOWTO's
"Optimization").
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any, Literal, TextIO

from pydantic_core import to_json
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import Scope

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
HANDLER_NAME = "promptmm"

access_logger = logging.getLogger("service.access")
logger = logging.getLogger(__name__)

request_id_var: ContextVar[str | None] = ContextVar("promptmm_request_id", default=None)
"""The id of the request being served (set by :mod:`service.observe`), or None."""


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of the record
    (a test runner swaps it), named so that a second configuration replaces it."""

    def __init__(self) -> None:
        super().__init__()
        self.set_name(HANDLER_NAME)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request runs (in its task or threads)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = request_id_var.get()
            if request_id is not None:
                record.request_id = request_id
        return True


def _to_json(obj: Any, **_options: Any) -> str:
    """pydantic-core's serialiser (a third of the standard library's time), ``str`` for the
    rest (as ``json_default`` would)."""
    return to_json(obj, fallback=str).decode()


def formatter(log_format: LogFormat) -> logging.Formatter:
    """JSON: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, then the record's
    extra fields (``request_id``, the access fields) and ``exc_info`` (a traceback, one string).
    Text: ``TEXT_FORMAT``."""
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT, defaults={"request_id": "-"})
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "color_message", "taskName"],
        json_serializer=_to_json,
    )


def configure_logging(level: str, log_format: LogFormat) -> None:
    """One stderr handler on the root logger in ``log_format``; ``service`` loggers at
    ``level``; uvicorn's loggers through the same handler, its access log off (ours replaces
    it). Calling it again replaces the handler."""
    handler = _Stderr()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    logging.getLogger("service").setLevel(level.upper())
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.handlers.clear()
    uvicorn.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def request_path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded: no control characters in a line)."""
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


def log_access(scope: Scope, status: int, seconds: float) -> None:
    """The access line of a finished request (INFO; ERROR for a 5xx), when INFO is on."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    recommender = getattr(scope["app"].state, "recommender", None)
    version = None if recommender is None else recommender.model_version
    method, path, latency_ms = scope["method"], request_path(scope), round(seconds * 1000, 3)
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "latency_ms": latency_ms,
        "model_version": version,
    }
    message = "%s %s %d %.3f ms %s"
    args: tuple[object, ...] = (method, path, status, latency_ms, version)
    error = scope.get("state", {}).get("error")
    if error is not None:
        fields["error"] = error
        message, args = message + ": %s", (*args, error)
    record = access_logger.makeRecord(
        access_logger.name,
        logging.ERROR if status >= 500 else logging.INFO,
        "",
        0,
        message,
        args,
        None,
        extra=fields,
    )
    access_logger.handle(record)
