"""GET /healthz (liveness), /readyz (bundle loaded and store reachable), /metrics."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.metrics import CONTENT_TYPE
from service.routes.deps import MetricsDep
from service.schemas import HealthResponse, NotReadyResponse, ReadyResponse
from service.store.base import StoreError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": NotReadyResponse, "description": "Not ready, with the reason."}},
)
def readyz(request: Request) -> ReadyResponse | JSONResponse:
    """Readiness: a bundle is loaded and the store answers."""
    recommender = getattr(request.app.state, "recommender", None)
    if recommender is None:
        return _not_ready("no model bundle loaded")
    try:
        reachable = request.app.state.store.ping()
    except StoreError as exc:
        logger.warning("readiness: store ping failed: %s", exc)
        reachable = False
    if not reachable:
        return _not_ready("store does not answer ping")
    redis = bool(request.app.state.settings.redis_url)
    return ReadyResponse(
        model_version=recommender.model_version, store="redis" if redis else "sqlite"
    )


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse(
        status_code=HTTPStatus.SERVICE_UNAVAILABLE,
        content=NotReadyResponse(reason=reason).model_dump(),
    )


@router.get("/metrics", response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition of this app's registry."""
    return Response(content=metrics.render(), media_type=CONTENT_TYPE)
