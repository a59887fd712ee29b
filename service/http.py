"""uvicorn's httptools protocol with a bound on request heads and a timeout to receive them.

uvicorn's httptools server reads request heads of any size (a 2 MB header is answered 200) and
waits for a slowly sent head forever (its keep-alive timer stops at the first byte).
:class:`BoundedHttpProtocol` answers 431 and closes the connection when a request line and
headers pass ``max_header_bytes``, closes a connection whose head is not complete
``header_timeout_s`` after the connection opened or the previous response ended, and closes an
idle keep-alive connection after ``keep_alive_s``. Serve with it by naming it to uvicorn::

    uvicorn service.main:create_app --factory --http service.http:BoundedHttpProtocol

The limits are the service's settings (``PROMPTMM_MAX_HEADER_BYTES``,
``PROMPTMM_HEADER_TIMEOUT_S``, ``PROMPTMM_KEEP_ALIVE_S``), read from the environment once per
process. Memory held for one head is at most ``max_header_bytes`` plus about two reads (256 KiB
each): the read the head began in is not counted.
"""

from __future__ import annotations

import asyncio
from functools import cache
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.config import Settings, load_settings

TOO_LARGE = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE


class HeadTooLargeError(ValueError):
    """A request line and headers passed ``max_header_bytes``."""


@cache
def _settings() -> Settings:
    return load_settings()


class BoundedHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with a head size limit and a head timeout (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = _settings()
        self.max_header_bytes = settings.max_header_bytes
        self.header_timeout_s = settings.header_timeout_s
        self.timeout_keep_alive = settings.keep_alive_s
        self._in_head = False
        self._too_large = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        continued = self._in_head
        super().data_received(data)
        if continued and self._in_head:
            # The whole read is head bytes: the head began before it and is not complete yet.
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            # Raised out of the parser, which stops; uvicorn then calls send_400_response.
            self._too_large = True
            raise HeadTooLargeError(size)
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def _refuse(self) -> None:
        """Answer 431 and close: the request head is over ``max_header_bytes``."""
        self._in_head = False
        self._stop_head_timer()
        message = (
            f"request line and headers are larger than max_header_bytes={self.max_header_bytes}"
        )
        body = message.encode()
        self.transport.write(
            b"".join(
                [
                    f"HTTP/1.1 {TOO_LARGE.value} {TOO_LARGE.phrase}\r\n".encode(),
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
