"""Small helpers shared by the integration tests: bundle facts and API calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from bundle import Bundle, read_bundle


def load_bundle(models_root: Path) -> Bundle:
    return read_bundle(models_root)


def train_item_ids(bundle: Bundle, user: int) -> set[str]:
    """External ids of the training items of internal user ``user``."""
    return {bundle.item_ids[int(item)] for item in bundle.seen_items(user)}


def users_with_history(bundle: Bundle, n: int) -> list[int]:
    """The first ``n`` internal users that have at least one training item."""
    users = [u for u in range(bundle.n_users) if bundle.seen_items(u).size > 0]
    if len(users) < n:
        raise ValueError(f"the bundle has {len(users)} users with training items, expected {n}")
    return users[:n]


def recommend(client: httpx.Client, user_id: str, k: int = 20) -> dict[str, Any]:
    """``POST /recommend`` that must succeed; returns the JSON body."""
    response = client.post("/recommend", json={"user_id": user_id, "k": k, "exclude_seen": True})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def item_ids_of(body: dict[str, Any]) -> list[str]:
    return [entry["item_id"] for entry in body["items"]]


def scores_of(body: dict[str, Any]) -> dict[str, float]:
    return {entry["item_id"]: float(entry["score"]) for entry in body["items"]}


def post_interactions(client: httpx.Client, user_id: str, item_ids: list[str]) -> dict[str, Any]:
    """``POST /interactions`` that must succeed; returns the JSON body."""
    response = client.post("/interactions", json={"user_id": user_id, "item_ids": item_ids})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
