"""A start-up that fails for a known reason is reported in one line, without a traceback.

Starlette answers a lifespan start-up that raised with ``lifespan.startup.failed`` carrying the
whole traceback, which uvicorn logs before it exits. For the errors whose message says all
there is to say (a bundle that cannot be read, a store that cannot be opened), that traceback
buries the reason; :class:`OneLineStartupErrors` replaces it with ``cannot start: <reason>``.
Any other error keeps its traceback.
"""

from __future__ import annotations

import sys

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bundle import BundleError
from service.store.base import StoreError

KNOWN_ERRORS = (BundleError, StoreError)


class OneLineStartupErrors:
    """Pure ASGI middleware: the one-line start-up failure of a known error (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def one_line_send(message: Message) -> None:
            # Starlette sends this while it handles the exception, so it is sys.exception().
            error = sys.exc_info()[1]
            if message["type"] == "lifespan.startup.failed" and isinstance(error, KNOWN_ERRORS):
                message = {**message, "message": f"cannot start: {error}"}
            await send(message)

        await self.app(scope, receive, one_line_send)
