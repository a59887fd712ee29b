"""The demo page and what it reads; mounted only when the ``demo`` setting is on.

- ``GET /demo``: the page (static HTML, ``demo.js``, ``demo.css``, an icon; nothing from elsewhere,
  which its Content-Security-Policy enforces). It calls the public API itself:
  ``POST /recommend`` and, with the key typed into the page, ``POST /interactions``.
- ``GET /demo/users``: a few of the served model's user ids to pick from.
- ``GET /demo/items?item_id=..``: the title and picture URL of catalog items, where
  ``demo_titles`` and ``demo_images`` are configured.
- ``GET /demo/images/{item_id}``: an item's picture; 404 unless the id is in the served
  catalog and the images folder listed a picture for it at start-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.config import Settings
from service.demo import STATIC_DIR, DemoCatalog
from service.errors import InvalidRequestError, error_entry
from service.recommender import Recommender
from service.routes.deps import RecommenderDep, SettingsDep, check_at_most

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page may load and call this origin only."""
MAX_USERS = 100


@asynccontextmanager
async def _load_catalog(app: FastAPI) -> AsyncIterator[None]:
    """Read the titles and list the pictures once, before the first request."""
    settings: Settings = app.state.settings
    app.state.demo = await run_in_threadpool(
        DemoCatalog.load,
        settings.demo_titles,
        settings.demo_titles_id_field,
        settings.demo_images,
    )
    yield


router = APIRouter(prefix="/demo", include_in_schema=False, lifespan=_load_catalog)


class DemoUsers(BaseModel):
    users: list[str]


class DemoItem(BaseModel):
    item_id: str
    title: str | None
    image: str | None


class DemoItems(BaseModel):
    items: list[DemoItem]


def _catalog(request: Request) -> DemoCatalog:
    catalog: DemoCatalog = request.app.state.demo
    return catalog


def _asset(name: str, media_type: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type=media_type)


@router.get("")
async def page() -> FileResponse:
    response = _asset("index.html", "text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


@router.get("/demo.js")
async def script() -> FileResponse:
    return _asset("demo.js", "text/javascript; charset=utf-8")


@router.get("/demo.css")
async def style() -> FileResponse:
    return _asset("demo.css", "text/css; charset=utf-8")


@router.get("/favicon.svg")
async def icon() -> FileResponse:
    return _asset("favicon.svg", "image/svg+xml")


@router.get("/users")
async def users(
    recommender: RecommenderDep, limit: Annotated[int, Query(ge=1, le=MAX_USERS)] = 20
) -> DemoUsers:
    """The first ``limit`` user ids of the served model."""
    return DemoUsers(users=list(recommender.bundle.user_ids[:limit]))


@router.get("/items")
async def items(
    request: Request,
    recommender: RecommenderDep,
    settings: SettingsDep,
    item_id: Annotated[list[str], Query(min_length=1)],
) -> DemoItems:
    """Title and picture URL (``null`` where there is none) of each catalog item asked for."""
    check_at_most(("query", "item_id"), "number of item_id", len(item_id), "max_k", settings.max_k)
    unknown = recommender.unknown_items(item_id)
    if unknown:
        raise InvalidRequestError(
            [error_entry(("query", "item_id"), f"unknown item ids (not in the catalog): {unknown}")]
        )
    catalog = _catalog(request)
    return DemoItems(
        items=[
            DemoItem(
                item_id=item,
                title=catalog.titles.get(item),
                image=f"/demo/images/{quote(item, safe='')}" if item in catalog.pictures else None,
            )
            for item in item_id
        ]
    )


@router.get("/images/{item_id:path}")
async def image(request: Request, item_id: str) -> FileResponse:
    """The picture listed for catalog item ``item_id`` at start-up, else 404."""
    recommender: Recommender = request.app.state.recommender
    picture = _catalog(request).pictures.get(item_id)
    if picture is None or recommender.unknown_items([item_id]):
        raise HTTPException(status_code=404, detail=f"no picture for item {item_id!r}")
    return FileResponse(picture.path, media_type=picture.media_type)
