"""Dependencies shared by the routes: the settings, the served recommender, the metrics.

They are ``async def`` because they only read ``app.state``: FastAPI runs a sync dependency
in the thread pool, one hop per dependency per request, which cost more than the lookups.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.errors import exceeds
from service.metrics import Metrics
from service.recommender import Recommender


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_recommender(request: Request) -> Recommender:
    """The recommender serving now; a request keeps it even if a reload swaps it meanwhile."""
    recommender: Recommender = request.app.state.recommender
    return recommender


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def check_at_most(
    loc: tuple[str | int, ...], what: str, value: int, setting: str, bound: int
) -> None:
    """Raise the 422 naming ``setting`` when ``value`` is above ``bound``."""
    if value > bound:
        raise exceeds(loc, what, value, setting, bound)
