"""Operator logs: one line per request and one per warning or error, as JSON or plain text.

:func:`configure_logging` gives the root logger one stderr handler (JSON lines by
``python-json-logger``, or text) and routes uvicorn's own loggers through it, so that every
line of the process has one shape. :class:`RequestLogMiddleware` is the access log: one line
per HTTP request (``service.access``: method, path, status, latency in ms, the served model
version, the request id) at INFO, ERROR for a 5xx. The request id is the client's
``X-Request-ID`` when it is a short token, else a fresh one (32 hex digits: a random prefix
per process, then a counter, a tenth of ``uuid4``'s cost); it is echoed in the response's
``X-Request-ID`` and added to every line logged while the request runs. An exception that
no handler turned into an answer is logged once, with its traceback and the request id, and
answered 500; a 4xx is the access line alone (handled errors never log a traceback).

What the access line costs ``/recommend`` is measured by ``bench/access_log.py``; to keep
it small the records skip what no line shows: the caller's frame (the access record is made
directly), thread and process names (``logging.logThreads`` and friends, the logging HOWTO's
"Optimization").
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any, Literal, TextIO

from pydantic_core import to_json
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LogFormat = Literal["json", "text"]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
HANDLER_NAME = "promptmm"

access_logger = logging.getLogger("service.access")
logger = logging.getLogger(__name__)

_request_id: ContextVar[str | None] = ContextVar("promptmm_request_id", default=None)


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
            request_id = _request_id.get()
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


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            candidate = value.decode("latin-1")
            return candidate if _REQUEST_ID_RE.fullmatch(candidate) else None
    return None


class RequestLogMiddleware:
    """Pure ASGI middleware: the request id (set, echoed), the access line, unhandled errors."""

    def __init__(self, app: ASGIApp, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or f"{self._prefix}{next(self._counter):016x}"
        token = _request_id.set(request_id)
        echoed = (_HEADER_KEY, request_id.encode())
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], _path(scope))
            if status:
                raise
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            await _internal_error(send_with_id, request_id)
        finally:
            if self.access_log:
                _log_access(scope, status or 500, time.perf_counter() - started)
            _request_id.reset(token)


def _path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded: no control characters in a line)."""
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    if not access_logger.isEnabledFor(logging.INFO):
        return
    recommender = getattr(scope["app"].state, "recommender", None)
    version = None if recommender is None else recommender.model_version
    method, path, latency_ms = scope["method"], _path(scope), round(seconds * 1000, 3)
    record = access_logger.makeRecord(
        access_logger.name,
        logging.ERROR if status >= 500 else logging.INFO,
        "",
        0,
        "%s %s %d %.3f ms %s",
        (method, path, status, latency_ms, version),
        None,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": latency_ms,
            "model_version": version,
        },
    )
    access_logger.handle(record)


async def _internal_error(send: Send, request_id: str) -> None:
    body = to_json({"detail": "internal server error", "request_id": request_id})
    await send(
        {
            "type": "http.response.start",
            "status": int(HTTPStatus.INTERNAL_SERVER_ERROR),
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
