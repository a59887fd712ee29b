"""API-key protection of write/admin endpoints and the request-body size limit.

``require_api_key`` is a dependency: the ``X-API-Key`` header must equal the ``api_key``
setting (compared in constant time); missing or wrong -> 401. Settings refuse to start
without a key unless ``allow_open_writes`` is set, the only case where it lets requests pass.

``BodySizeLimitMiddleware`` answers 413 for a body over ``max_body_bytes``: at once when
``Content-Length`` says so, and while reading when a body without it (chunked) grows past it.
"""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import Settings

API_KEY_HEADER = "X-API-Key"

_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The service's API key (PROMPTMM_API_KEY); required by write and admin endpoints.",
)


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Let the request through only with the configured key (or when writes are open).

    ``async`` (no blocking work) so that FastAPI does not run it in the thread pool.
    """
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return
    if not key:
        raise HTTPException(
            status_code=HTTPStatus.UNAUTHORIZED,
            detail=f"missing {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    expected = settings.api_key.get_secret_value().encode()
    if not hmac.compare_digest(key.encode(), expected):
        raise HTTPException(
            status_code=HTTPStatus.UNAUTHORIZED,
            detail=f"invalid {API_KEY_HEADER}",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (FastAPI re-raises it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            detail=f"request body is larger than max_body_bytes={limit}",
        )


class BodySizeLimitMiddleware:
    """Pure ASGI middleware bounding every HTTP request body to ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": BodyTooLargeError(self.max_bytes).detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": int(HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
