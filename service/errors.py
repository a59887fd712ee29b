"""Domain errors of the service and the HTTP answers they map to.

Recommender code raises these plain exceptions; :func:`install_error_handlers` turns them into
JSON responses, so routes stay thin. A 422 body has FastAPI's shape,
``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``, whose ``loc`` names the field.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bundle import BundleError
from service.store.base import StoreError

logger = logging.getLogger(__name__)

Loc = tuple[str | int, ...]
STORE_UNAVAILABLE = "store unavailable (the reason is in the service's log)"
LOGGED_ERRORS = 3
"""Validation errors named in the one log line of a 422."""


def error_entry(
    loc: Loc, msg: str, kind: str = "value_error", ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One item of a 422 ``detail`` list, shaped like FastAPI's validation errors."""
    entry: dict[str, Any] = {"loc": list(loc), "msg": msg, "type": kind}
    if ctx:
        entry["ctx"] = ctx
    return entry


class InvalidRequestError(ValueError):
    """A request broke a rule that its schema cannot express (a bound read from settings)."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(entry["msg"]) for entry in entries))
        self.entries = entries


class UnknownItemsError(ValueError):
    """Some events name item ids that are not in the served bundle; nothing was written.

    ``unknown`` maps the position of each offending event to its unknown ids, in order.
    """

    def __init__(self, unknown: dict[int, list[str]]) -> None:
        self.unknown = unknown
        listed = sorted({item for ids in unknown.values() for item in ids})
        super().__init__(f"unknown item ids (not in the served model's catalog): {listed}")

    def as_request_error(self, batch: bool) -> InvalidRequestError:
        """The 422 naming each event's unknown ids (``events[i].item_ids`` when ``batch``)."""
        return InvalidRequestError(
            [
                error_entry(
                    ("body", "events", position, "item_ids") if batch else ("body", "item_ids"),
                    f"unknown item ids (not in the served model's catalog): {ids}",
                    kind="unknown_items",
                    ctx={"unknown_item_ids": ids},
                )
                for position, ids in self.unknown.items()
            ]
        )


class UnknownUserError(LookupError):
    """The user has no vector and the service is configured to answer 404 for it."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"unknown user_id {user_id!r}: no model vector and no interactions")
        self.user_id = user_id


def exceeds(loc: Loc, what: str, value: int, setting: str, bound: int) -> InvalidRequestError:
    """The error for ``value`` above the bound that ``setting`` configures."""
    return InvalidRequestError(
        [
            error_entry(
                loc,
                f"{what} is {value}, above the limit {setting}={bound}",
                kind="less_than_equal",
                ctx={"le": bound, "setting": setting},
            )
        ]
    )


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidRequestError)
    return JSONResponse(
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY, content={"detail": exc.entries}
    )


def _renderable(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``errors`` as JSON-safe data; without their ``input`` when that cannot be JSON."""
    try:
        encoded: list[dict[str, Any]] = jsonable_encoder(errors)
        json.dumps(encoded, allow_nan=False)
    except ValueError:
        bare: list[dict[str, Any]] = jsonable_encoder(
            [{key: value for key, value in error.items() if key != "input"} for error in errors]
        )
        return bare
    return encoded


def _precise(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error whose message says what was wrong (not just "JSON decode error")."""
    reason = error.get("ctx", {}).get("error") if error.get("type") == "json_invalid" else None
    return {**error, "msg": f"JSON decode error: {reason}"} if reason else error


async def _validation_failed(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a body it could not parse or validate, always renderable; the reason
    goes on the request's access line (:func:`service.logs.log_access`), its one log line."""
    assert isinstance(exc, RequestValidationError)
    errors = [_precise(dict(error)) for error in exc.errors()]
    request.state.error = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
        for error in errors[:LOGGED_ERRORS]
    ) + (f" (and {len(errors) - LOGGED_ERRORS} more)" if len(errors) > LOGGED_ERRORS else "")
    return JSONResponse(
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY, content={"detail": _renderable(errors)}
    )


async def _unknown_user(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=HTTPStatus.NOT_FOUND, content={"detail": str(exc)})


async def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    """503 without the store's error, which names its address (a Redis URL); that is logged."""
    logger.error("store error: %s", exc)
    return JSONResponse(
        status_code=HTTPStatus.SERVICE_UNAVAILABLE,
        content={"detail": STORE_UNAVAILABLE},
    )


async def _bundle_error(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        content={"detail": [{"loc": ["body", "path"], "msg": str(exc), "type": "bundle_error"}]},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON answers of the service's domain errors on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(InvalidRequestError, _invalid_request)
    app.add_exception_handler(UnknownUserError, _unknown_user)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(BundleError, _bundle_error)
