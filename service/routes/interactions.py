"""POST /interactions and /interactions/batch (API key required)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import APIRouter, Depends

from service.errors import UnknownItemsError
from service.jsonbody import StrictJSONRoute
from service.recommender import Recommender
from service.routes.deps import MetricsDep, RecommenderDep, SettingsDep, check_at_most
from service.schemas import (
    BatchInteractionRequest,
    BatchInteractionResponse,
    InteractionEvent,
    InteractionResponse,
)
from service.security import require_api_key
from service.store.base import Event

router = APIRouter(
    tags=["interactions"],
    dependencies=[Depends(require_api_key)],
    responses={401: {"description": "Missing or wrong X-API-Key."}},
    route_class=StrictJSONRoute,
)


def _record(recommender: Recommender, events: Sequence[InteractionEvent], batch: bool) -> int:
    now = time.time()
    try:
        return recommender.record(
            [
                Event(
                    event.user_id,
                    tuple(event.item_ids),
                    now if event.timestamp is None else event.timestamp,
                )
                for event in events
            ]
        )
    except UnknownItemsError as exc:
        raise exc.as_request_error(batch) from exc


@router.post("/interactions")
def post_interactions(
    body: InteractionEvent,
    recommender: RecommenderDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> InteractionResponse:
    """Durably record one event; the next ``/recommend`` folds it into the user's and items'
    vectors (the stateful ``bpr`` update is fine-tuned and stored before the answer)."""
    check_at_most(
        ("body", "item_ids"),
        "number of item_ids",
        len(body.item_ids),
        "max_items_per_event",
        settings.max_items_per_event,
    )
    accepted = _record(recommender, [body], batch=False)
    metrics.interactions.inc(accepted)
    return InteractionResponse(
        user_id=body.user_id, accepted=accepted, model_version=recommender.model_version
    )


@router.post("/interactions/batch")
def post_interactions_batch(
    body: BatchInteractionRequest,
    recommender: RecommenderDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> BatchInteractionResponse:
    """Record many events all or nothing (then, for ``bpr``, fine-tune every touched user)."""
    check_at_most(
        ("body", "events"), "number of events", len(body.events), "max_batch", settings.max_batch
    )
    for position, event in enumerate(body.events):
        check_at_most(
            ("body", "events", position, "item_ids"),
            "number of item_ids",
            len(event.item_ids),
            "max_items_per_event",
            settings.max_items_per_event,
        )
    accepted = _record(recommender, body.events, batch=True)
    metrics.interactions.inc(accepted)
    return BatchInteractionResponse(
        events=len(body.events), accepted=accepted, model_version=recommender.model_version
    )
