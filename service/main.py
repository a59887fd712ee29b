"""The app factory: ``uvicorn service.main:create_app --factory``.

Nothing heavy happens at import or in :func:`create_app`; the lifespan opens the store,
reads the bundle and builds the index onto ``app.state`` (``settings``, ``store``,
``recommender``, ``metrics``, ``reload_lock``), and closes the store at shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.config import Settings, check_bundle_path, load_settings
from service.errors import install_error_handlers
from service.heap import freeze_long_lived
from service.logs import configure_logging
from service.metrics import Metrics
from service.observe import ObserveMiddleware
from service.recommender import Recommender
from service.routes import demo, routers
from service.security import BodySizeLimitMiddleware
from service.startup import OneLineStartupErrors
from service.store import open_store

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Top-k recommendations from a distilled PromptMM student. Interactions are stored durably "
    "before the write is acknowledged and folded into the user's and the items' vectors from "
    "the next request on, on every replica."
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    check_bundle_path(settings.bundle_path)
    store = open_store(settings)
    try:
        loaded = await run_in_threadpool(
            Recommender.load, settings, store, None, metrics.observe_finetune
        )
        app.state.store = store
        app.state.recommender = loaded
        metrics.set_model(
            loaded.model_version, loaded.bundle.dataset, loaded.index.kind, loaded.index.size
        )
        del loaded  # app.state holds the model: a reload must be able to free it
        freeze_long_lived()
        yield
    finally:
        if app.state.recommender is not None:
            app.state.recommender.close()
        app.state.recommender = None
        store.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the environment (``PROMPTMM_*``, ``REDIS_URL``)."""
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="PromptMM recommendations",
        description=DESCRIPTION,
        version="1",
        lifespan=_lifespan,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.recommender = None
    app.state.reload_lock = threading.Lock()
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    if settings.demo:
        app.include_router(demo.router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics, access_log=settings.access_log)
    app.add_middleware(OneLineStartupErrors)
    return app
