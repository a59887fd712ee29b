"""POST /admin/reload (API key required): swap in a new bundle atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from bundle import BundleError, resolve
from bundle.format import MANIFEST
from service.config import Settings
from service.errors import InvalidRequestError, error_entry
from service.heap import freeze_long_lived
from service.jsonbody import StrictJSONRoute
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
    route_class=StrictJSONRoute,
)


def models_root(settings: Settings) -> Path:
    """The models_root setting, by default bundle_path when it is a models root, else its parent."""
    if settings.models_root is not None:
        return settings.models_root
    bundle_path = settings.bundle_path
    return bundle_path.parent if (bundle_path / MANIFEST).is_file() else bundle_path


def confined(path: Path, root: Path) -> Path:
    """The bundle directory ``path`` names (relative paths are read from ``root``), all symlinks
    resolved; a 422 when it, or the version its ``LATEST`` names, lies outside ``root``."""
    real_root = root.resolve()
    try:
        target = (root / path).resolve()
        if target.is_relative_to(real_root):
            target = resolve(target).resolve()
            if target.is_relative_to(real_root):
                return target
    except BundleError as exc:
        raise _path_error(str(exc)) from None
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        raise _path_error(f"path cannot be read: {exc}") from None
    raise _path_error(
        f"{path} is outside the models root {root} (the models_root setting); "
        "only bundles under it can be loaded"
    )


def _path_error(message: str) -> InvalidRequestError:
    return InvalidRequestError([error_entry(("body", "path"), message, kind="bundle_error")])


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
    fails to load leaves the old one serving (422 naming the problem). A ``path`` must lie
    under the models root (the models_root setting; a relative one is read from it).
    """
    state = request.app.state
    path = (
        confined(Path(body.path), models_root(settings))
        if body is not None and body.path
        else settings.bundle_path
    )
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
