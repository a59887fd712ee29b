"""Strict JSON request bodies: UTF-8 only, finite numbers only.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, RFC 8259 section 6)
and turns ``1e999`` into ``inf``; pydantic-core's parser does the same. A non-finite number in
a body could then reach validation, whose 422 answer cannot be rendered as JSON (a 500), or a
field that takes it. :func:`loads` refuses them, and a body that is not UTF-8, with a
:class:`json.JSONDecodeError` naming the offending character's position, which FastAPI answers
with a 422 (``type`` ``json_invalid``, ``loc`` ``["body", position]``).

:class:`StrictJSONRoute` makes the routes FastAPI parses use :func:`loads`; ``/recommend``,
which validates its raw body with pydantic-core, calls :func:`loads` only when that fails, to
tell the client precisely why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

_TOKENS = re.compile(
    r'"(?:[^"\\]|\\.)*"|(?P<number>-?(?:NaN|Infinity|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?))'
)
"""JSON strings (skipped) and number-like tokens, to locate the first non-finite one."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape: the only way a parsed string can hold a lone surrogate."""


class NonFiniteNumberError(ValueError):
    """A body holds a number JSON cannot represent as a finite float64."""


def _constant(token: str) -> float:
    raise NonFiniteNumberError(token)


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise NonFiniteNumberError(token)
    return value


def _non_finite_position(text: str) -> tuple[str, int]:
    """The first non-finite number token in ``text`` outside strings, and its position."""
    for match in _TOKENS.finditer(text):
        token = match.group("number")
        if token is not None and not math.isfinite(float(token)):
            return token, match.start("number")
    return "", 0


def _lone_surrogate(value: Any) -> str | None:
    """The first string in ``value`` (keys included) that is not valid Unicode, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    if isinstance(value, dict):
        value = [item for pair in value.items() for item in pair]
    if isinstance(value, list):
        for item in value:
            found = _lone_surrogate(item)
            if found is not None:
                return found
    return None


def loads(raw: bytes) -> Any:
    """Parse ``raw`` as JSON; refuse bytes that are not UTF-8, numbers that are not finite and
    strings that escape a lone UTF-16 surrogate (``"\\ud800"``: not a Unicode character).

    Raises:
        json.JSONDecodeError: with a message naming what was wrong and where.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(
            f"the body is not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})",
            "",
            exc.start,
        ) from None
    try:
        parsed = json.loads(text, parse_constant=_constant, parse_float=_finite_float)
    except NonFiniteNumberError:
        token, position = _non_finite_position(text)
        raise json.JSONDecodeError(
            f"{token} is not a finite number (JSON has no NaN or Infinity, and a number must "
            "fit a float64)",
            text,
            position,
        ) from None
    if _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(parsed)
        if bad is not None:
            escaped = json.dumps(bad)
            raise json.JSONDecodeError(
                f"the string {escaped} escapes a lone UTF-16 surrogate (not a character)",
                text,
                max(text.find(escaped), 0),
            )
    return parsed


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = loads(await self.body())
        return self._strict_json


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` whose JSON body is read by :func:`loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict_handler
