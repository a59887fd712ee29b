"""POST /recommend and /recommend/batch.

``/recommend`` is the hot path, so it is ``async`` and answers with JSON built straight from
the :class:`Recommendation` (``response_model`` still documents it; FastAPI does not validate
a returned ``Response`` a second time). With the embedded store its blocking work is small and
bounded (one indexed SQLite read, the user's fold-in and one FAISS search, under half a
millisecond; with the stateful ``bpr`` update, once per user after a reload, a re-fold and one
group commit), so it runs on the event loop instead of paying a thread-pool hop; with Redis
(network reads that can wait
up to the socket timeout) it runs in the thread pool so that a slow Redis never stalls the
loop. It reads ``app.state`` itself rather than through dependencies, whose resolution cost
a measurable share of the request. ``/recommend/batch`` (up to ``max_batch`` searches) always
runs in the thread pool.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from service.config import Settings
from service.metrics import Metrics
from service.recommender import Recommendation, Recommender, RecommendQuery
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


def _json(recommendation: Recommendation) -> Response:
    """The :class:`RecommendResponse` body, serialised by pydantic-core without a model.

    ``to_json`` writes the same JSON as the standard library's encoder in a quarter of the
    time (8 vs 35 microseconds for k=20), a tenth of this endpoint's own work.
    """
    return Response(
        to_json(
            {
                "user_id": recommendation.user_id,
                "items": [
                    {"item_id": item, "score": score} for item, score in recommendation.items
                ],
                "model_version": recommendation.model_version,
                "fallback": recommendation.fallback,
            }
        ),
        media_type="application/json",
    )


def _response(recommendation: Recommendation) -> RecommendResponse:
    return RecommendResponse(
        user_id=recommendation.user_id,
        items=[ScoredItem(item_id=item, score=score) for item, score in recommendation.items],
        model_version=recommendation.model_version,
        fallback=recommendation.fallback,
    )


@router.post("/recommend", response_model=RecommendResponse, responses=UNKNOWN_USER)
async def recommend(body: RecommendRequest, request: Request) -> Response:
    """Top-k items for one user (popularity fallback, flagged, for an unknown user)."""
    state = request.app.state
    recommender: Recommender = state.recommender
    settings: Settings = state.settings
    metrics: Metrics = state.metrics
    check_at_most(("body", "k"), "k", body.k, "max_k", settings.max_k)
    if settings.redis_url is None:
        result = recommender.recommend(body.user_id, body.k, body.exclude_seen)
    else:
        result = await run_in_threadpool(
            recommender.recommend, body.user_id, body.k, body.exclude_seen
        )
    if result.fallback is not None:
        metrics.fallbacks.inc()
    return _json(result)


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
