"""POST /recommend and /recommend/batch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.recommender import Recommendation, RecommendQuery
from service.routes.deps import MetricsDep, RecommenderDep, SettingsDep, check_at_most
from service.schemas import (
    BatchRecommendRequest,
    BatchRecommendResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
)

router = APIRouter(tags=["recommendations"])

UNKNOWN_USER: dict[int | str, dict[str, Any]] = {
    404: {"description": 'Unknown user, when the unknown_user setting is "404".'}
}


def _response(recommendation: Recommendation) -> RecommendResponse:
    return RecommendResponse(
        user_id=recommendation.user_id,
        items=[ScoredItem(item_id=item, score=score) for item, score in recommendation.items],
        model_version=recommendation.model_version,
        fallback=recommendation.fallback,
    )


@router.post("/recommend", responses=UNKNOWN_USER)
def recommend(
    body: RecommendRequest,
    recommender: RecommenderDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> RecommendResponse:
    """Top-k items for one user (popularity fallback, flagged, for an unknown user)."""
    check_at_most(("body", "k"), "k", body.k, "max_k", settings.max_k)
    result = recommender.recommend(body.user_id, body.k, body.exclude_seen)
    if result.fallback is not None:
        metrics.fallbacks.inc()
    return _response(result)


@router.post("/recommend/batch", responses=UNKNOWN_USER)
def recommend_batch(
    body: BatchRecommendRequest,
    recommender: RecommenderDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> BatchRecommendResponse:
    """Top-k items for many users in one call (one index search for all of them)."""
    check_at_most(
        ("body", "requests"),
        "number of requests",
        len(body.requests),
        "max_batch",
        settings.max_batch,
    )
    for position, request in enumerate(body.requests):
        check_at_most(("body", "requests", position, "k"), "k", request.k, "max_k", settings.max_k)
    results = recommender.recommend_many(
        [RecommendQuery(r.user_id, r.k, r.exclude_seen) for r in body.requests]
    )
    metrics.fallbacks.inc(sum(result.fallback is not None for result in results))
    return BatchRecommendResponse(results=[_response(result) for result in results])
