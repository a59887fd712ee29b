"""Request and response bodies of the HTTP API, named by role, with OpenAPI examples.

Ids are the bundle's external ids as strings; a JSON integer is accepted and converted to its
decimal string. Bounds that come from settings (max_k, max_batch, max_items_per_event) are
checked in the routes, which answer 422 naming the setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

MAX_ID_LENGTH = 256


def _id_to_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


ExternalId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH),
    BeforeValidator(_id_to_str),
    Field(description="An external id (string; a JSON integer is read as its decimal form)."),
]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class _Request(BaseModel):
    """A request body: unknown fields are refused, and values are not coerced (strict: ``true``
    is not the integer 1, ``2.0`` is not 2, ``"yes"`` is not a boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(_Request):
    model_config = _examples({"user_id": "42", "k": 3, "exclude_seen": True})

    user_id: ExternalId
    k: int = Field(20, ge=1, description="How many items; at most the max_k setting.")
    exclude_seen: bool = Field(
        True, description="Leave out training items and every item posted for this user."
    )


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="Inner product of user and item vectors (or popularity).")


class RecommendResponse(BaseModel):
    model_config = _examples(
        {
            "user_id": "42",
            "items": [
                {"item_id": "1187", "score": 4.21},
                {"item_id": "305", "score": 3.97},
                {"item_id": "2210", "score": 3.88},
            ],
            "model_version": "tiktok-20261126T120000Z-3f2a1b",
            "fallback": None,
        },
        {
            "user_id": "new-user-7",
            "items": [{"item_id": "12", "score": 311.0}, {"item_id": "7", "score": 298.0}],
            "model_version": "tiktok-20261126T120000Z-3f2a1b",
            "fallback": "popular",
        },
    )

    user_id: str
    items: list[ScoredItem]
    model_version: str
    fallback: Literal["popular"] | None = Field(
        description='null for a personal ranking; "popular" for an unknown user\'s fallback.'
    )


class BatchRecommendRequest(_Request):
    model_config = _examples({"requests": [{"user_id": "42", "k": 2}, {"user_id": "7", "k": 2}]})

    requests: list[RecommendRequest] = Field(
        min_length=1, description="At most the max_batch setting."
    )


class BatchRecommendResponse(BaseModel):
    model_config = _examples(
        {
            "results": [
                {
                    "user_id": "42",
                    "items": [
                        {"item_id": "1187", "score": 4.21},
                        {"item_id": "305", "score": 3.97},
                    ],
                    "model_version": "tiktok-20261126T120000Z-3f2a1b",
                    "fallback": None,
                },
                {
                    "user_id": "7",
                    "items": [{"item_id": "88", "score": 2.5}, {"item_id": "1187", "score": 2.4}],
                    "model_version": "tiktok-20261126T120000Z-3f2a1b",
                    "fallback": None,
                },
            ]
        }
    )

    results: list[RecommendResponse]


class InteractionEvent(_Request):
    model_config = _examples(
        {"user_id": "42", "item_ids": ["305", "2210"], "timestamp": 1764158400.0}
    )

    user_id: ExternalId
    item_ids: list[ExternalId] = Field(
        min_length=1, description="Items the user interacted with; at most max_items_per_event."
    )
    timestamp: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Unix seconds; default: time of receipt."
    )


class InteractionResponse(BaseModel):
    model_config = _examples(
        {"user_id": "42", "accepted": 2, "model_version": "tiktok-20261126T120000Z-3f2a1b"}
    )

    user_id: str
    accepted: int = Field(description="Item ids durably recorded.")
    model_version: str = Field(description="The model version the interaction will be folded into.")


class BatchInteractionRequest(_Request):
    model_config = _examples(
        {
            "events": [
                {"user_id": "42", "item_ids": ["305"]},
                {"user_id": "7", "item_ids": ["88", "12"], "timestamp": 1764158400.0},
            ]
        }
    )

    events: list[InteractionEvent] = Field(
        min_length=1, description="Written all or nothing; at most the max_batch setting."
    )


class BatchInteractionResponse(BaseModel):
    model_config = _examples(
        {"events": 2, "accepted": 3, "model_version": "tiktok-20261126T120000Z-3f2a1b"}
    )

    events: int
    accepted: int
    model_version: str


class HealthResponse(BaseModel):
    model_config = _examples({"status": "ok"})

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    model_config = _examples(
        {"status": "ready", "model_version": "tiktok-20261126T120000Z-3f2a1b", "store": "sqlite"}
    )

    status: Literal["ready"] = "ready"
    model_version: str
    store: Literal["sqlite", "redis"]


class NotReadyResponse(BaseModel):
    model_config = _examples({"status": "unavailable", "reason": "store does not answer ping"})

    status: Literal["unavailable"] = "unavailable"
    reason: str


class ReloadRequest(_Request):
    model_config = _examples({}, {"path": "models/tiktok"})

    path: str | None = Field(
        None,
        min_length=1,
        description="A bundle directory or a models root (LATEST is followed); "
        "default: the bundle_path setting.",
    )


class ReloadResponse(BaseModel):
    model_config = _examples(
        {
            "model_version": "tiktok-20261127T080000Z-9c01de",
            "previous_version": "tiktok-20261126T120000Z-3f2a1b",
        }
    )

    model_version: str
    previous_version: str
