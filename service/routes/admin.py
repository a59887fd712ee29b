"""POST /admin/reload (API key required): swap in a new bundle atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from service.heap import freeze_long_lived
from service.recommender import Recommender
from service.routes.deps import MetricsDep, SettingsDep
from service.schemas import ReloadRequest, ReloadResponse
from service.security import require_api_key

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_api_key)],
    responses={401: {"description": "Missing or wrong X-API-Key."}},
)


@router.post("/reload")
def reload(
    request: Request,
    settings: SettingsDep,
    metrics: MetricsDep,
    body: Annotated[ReloadRequest | None, Body()] = None,
) -> ReloadResponse:
    """Load the bundle at ``path`` (default: the bundle_path setting) and swap it in.

    The new model is built completely (bundle read and verified, index built) before one
    reference is replaced; requests in flight finish on the old model, and a bundle that
    fails to load leaves the old one serving (422 naming the problem).
    """
    state = request.app.state
    path = Path(body.path) if body is not None and body.path else settings.bundle_path
    with state.reload_lock:
        previous_version = state.recommender.model_version
        fresh = Recommender.load(settings, state.store, path, on_finetune=metrics.observe_finetune)
        state.recommender = fresh
        metrics.set_model(
            fresh.model_version, fresh.bundle.dataset, fresh.index.kind, fresh.index.size
        )
    logger.info("reloaded %s -> %s", previous_version, fresh.model_version)
    freeze_long_lived()
    return ReloadResponse(model_version=fresh.model_version, previous_version=previous_version)
