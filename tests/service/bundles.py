"""Small random but valid bundles for fast service tests (no torch, no training)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundle import Bundle, write_bundle
from service.config import Settings, load_settings


def lightgcn_layers(
    user_ego: np.ndarray, item_ego: np.ndarray, rows: list[np.ndarray], n_layers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A LightGCN forward in numpy: ``(user final, item final, item layers 0..L-1)``."""
    matrix = np.zeros((user_ego.shape[0], item_ego.shape[0]))
    for user, row in enumerate(rows):
        matrix[user, row] = 1.0
    user_deg, item_deg = matrix.sum(axis=1), matrix.sum(axis=0)
    scale_u = np.where(user_deg > 0, 1 / np.sqrt(np.maximum(user_deg, 1)), 0.0)
    scale_i = np.where(item_deg > 0, 1 / np.sqrt(np.maximum(item_deg, 1)), 0.0)
    adjacency = scale_u[:, None] * matrix * scale_i[None, :]
    users, items = [user_ego.astype(np.float64)], [item_ego.astype(np.float64)]
    for _ in range(n_layers):
        users, items = [*users, adjacency @ items[-1]], [*items, adjacency.T @ users[-1]]
    return (
        np.mean(users, axis=0).astype(np.float32),
        np.mean(items, axis=0).astype(np.float32),
        np.stack(items[:n_layers]).astype(np.float32).reshape(n_layers, *item_ego.shape),
    )


def random_bundle(
    n_users: int = 50,
    n_items: int = 80,
    dim: int = 16,
    *,
    seed: int = 0,
    version: str = "test-v1",
    items_per_user: tuple[int, int] = (2, 8),
    n_layers: int | None = 2,
) -> Bundle:
    """A bundle with Gaussian embeddings and 2-7 random training items per user.

    User ids are ``"0"``..``"n_users-1"`` (so a JSON integer id names them too), item ids
    ``"i0"``..; the last item is never a training item, so its popularity is zero. With
    ``n_layers`` the embeddings are a real LightGCN forward of Gaussian egos over the training
    graph and the bundle carries the layers, as an export writes them; ``None``: Gaussian final
    embeddings and no layers.
    """
    rng = np.random.default_rng(seed)
    counts = rng.integers(items_per_user[0], items_per_user[1], size=n_users)
    rows = [np.sort(rng.choice(n_items - 1, size=count, replace=False)) for count in counts]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    users = rng.standard_normal((n_users, dim)).astype(np.float32)
    items = rng.standard_normal((n_items, dim)).astype(np.float32)
    user_ego = item_layers = None
    if n_layers is not None:
        user_ego = users
        users, items, item_layers = lightgcn_layers(user_ego, items, rows, n_layers)
    return Bundle(
        user_embeddings=users,
        item_embeddings=items,
        train_indptr=indptr,
        train_indices=np.concatenate(rows).astype(np.int32),
        user_ids=[str(user) for user in range(n_users)],
        item_ids=[f"i{item}" for item in range(n_items)],
        model_version=version,
        dataset="random",
        data_fingerprint=f"sha256:random-{seed}",
        user_ego=user_ego,
        item_layers=item_layers,
    )


def write_random_bundle(root: Path, **kwargs: Any) -> Path:
    """Write :func:`random_bundle` (``kwargs`` passed on) under models root ``root``.

    ``root/LATEST`` names it, so ``root`` itself is a valid ``bundle_path``; returns the
    version directory.
    """
    return write_bundle(random_bundle(**kwargs), root)


API_KEY = "test-api-key-0123456789"
AUTH = {"X-API-Key": API_KEY}
CONTRACT = [
    pytest.param((store, kind), id=f"{store}-{kind}")
    for store in ("sqlite", "redis")
    for kind in ("exact", "hnsw")
]


def contract_settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    combo: tuple[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings serving a random bundle written under ``tmp_path/models``.

    ``combo`` is (store, index kind), by default ``request.param`` (one of :data:`CONTRACT`);
    a Redis store gets a fresh key prefix. ``overrides`` set any other field.
    """
    store, kind = combo if combo is not None else request.param
    models = tmp_path / "models"
    if not models.exists():
        write_random_bundle(models)
    values: dict[str, Any] = {
        "bundle_path": models,
        "store_path": tmp_path / "store.sqlite3",
        "api_key": API_KEY,
        "index_kind": kind,
        "REDIS_URL": None,
    }
    if store == "redis":
        values["REDIS_URL"] = request.getfixturevalue("redis_url")
        values["redis_prefix"] = request.getfixturevalue("redis_prefix")
    values.update(overrides)
    return load_settings(**values)


def top_k(bundle: Bundle, vector: np.ndarray, k: int, exclude: Iterable[int]) -> list[str]:
    """Reference ranking: float64 scores, ``exclude`` dropped, sorted by (-score, index)."""
    scores = bundle.item_embeddings.astype(np.float64) @ np.asarray(vector, dtype=np.float64)
    banned = set(exclude)
    order = sorted(
        (item for item in range(bundle.n_items) if item not in banned),
        key=lambda item: (-scores[item], item),
    )
    return [bundle.item_ids[item] for item in order[:k]]
