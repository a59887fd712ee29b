"""Every HTTP request observed once: its id, its duration metric, its access line, and an
exception that no handler answered.

The request id is the client's ``X-Request-ID`` when it is a short token, else a fresh one
(32 hex digits: a random prefix per process, then a counter, a tenth of ``uuid4``'s cost); it
is echoed in the response's ``X-Request-ID`` and carried by every line logged while the
request runs. The duration goes to ``promptmm_http_request_duration_seconds`` (labelled by the
route's path template, ``unmatched`` for unknown paths, to bound label cardinality) and, with
the ``access_log`` setting, to the access line (:func:`service.logs.log_access`). An
exception that reached this far is logged once, with its traceback and the request id, and
answered 500 with the request id in the body; a 4xx is the access line alone.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from http import HTTPStatus

from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import log_access, request_id_var, request_path
from service.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()

logger = logging.getLogger(__name__)


class ObserveMiddleware:
    """Pure ASGI middleware, outermost of the app's own: id, metric, access line, errors."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or f"{self._prefix}{next(self._counter):016x}"
        token = request_id_var.set(request_id)
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
            logger.exception("unhandled error in %s %s", scope["method"], request_path(scope))
            if status:
                raise
            await _internal_error(send_with_id, request_id)
        finally:
            seconds = time.perf_counter() - started
            status = status or int(HTTPStatus.INTERNAL_SERVER_ERROR)
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_duration.labels(endpoint, scope["method"], str(status)).observe(
                seconds
            )
            if self.access_log:
                log_access(scope, status, seconds)
            request_id_var.reset(token)


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            candidate = value.decode("latin-1")
            return candidate if _REQUEST_ID_RE.fullmatch(candidate) else None
    return None


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
