"""A from-scratch reference of the online state's semantics (``service.overlay``), tests only.

It recomputes everything from the bundle's egos, item layers and training rows and the whole
log, with loops and no running sums: a user's vector is the LightGCN fold-in over all their
items; edge ``t`` of a user with ``n`` online edges contributes the user's
``sum_{l<L} u^(l) / sqrt(d_u)`` as it was after edge ``min(t + W - 1, n - 1)``; an item's
vector is ``(e^(0) + R / sqrt(d)) / (L + 1)`` with ``R`` summed over its training users (as
the training graph gives them) and its online edges, ``d`` its training + online degree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bundle import Bundle


@dataclass
class Reference:
    user_vectors: dict[str, np.ndarray]
    """Users with at least one new online item: their vector."""
    posted: dict[str, list[int]]
    """Users' new online items, in log order."""
    item_vectors: np.ndarray
    """Every item's served vector (float64)."""


def _contribution(
    ego: np.ndarray, layers: np.ndarray, items: Sequence[int], degrees: np.ndarray
) -> np.ndarray:
    """``sum_{l=0..L-1} u^(l) / sqrt(d_u)`` of a user holding ``items``."""
    d_u = len(items)
    total = ego.astype(np.float64).copy()
    for layer in range(1, layers.shape[0]):
        for item in items:
            total += layers[layer - 1, item].astype(np.float64) / np.sqrt(
                d_u * max(int(degrees[item]), 1)
            )
    return total / np.sqrt(d_u)


def _final(
    ego: np.ndarray, layers: np.ndarray, items: Sequence[int], degrees: np.ndarray
) -> np.ndarray:
    total = ego.astype(np.float64).copy()
    for layer in range(1, layers.shape[0] + 1):
        for item in items:
            total += layers[layer - 1, item].astype(np.float64) / np.sqrt(
                len(items) * max(int(degrees[item]), 1)
            )
    return total / (layers.shape[0] + 1)


def reference(bundle: Bundle, pairs: Sequence[tuple[str, str]], window: int) -> Reference:
    """The online state after ``pairs`` (the log, in order) under the documented semantics."""
    assert bundle.user_ego is not None and bundle.item_layers is not None
    layers = bundle.item_layers
    degrees = bundle.item_popularity()
    rows = {user: row for row, user in enumerate(bundle.user_ids)}
    columns = {item: column for column, item in enumerate(bundle.item_ids)}
    mean_ego = bundle.user_ego.mean(axis=0)
    train = {row: sorted(set(bundle.seen_items(row).tolist())) for row in range(bundle.n_users)}
    posted: dict[str, list[int]] = {}
    for user_id, item_id in pairs:
        item = columns.get(item_id)
        row = rows.get(user_id)
        held = train.get(row, []) if row is not None else []
        if item is None or item in held or item in posted.get(user_id, []):
            continue
        posted.setdefault(user_id, []).append(item)

    def ego_of(user_id: str) -> np.ndarray:
        row = rows.get(user_id)
        return mean_ego if row is None else bundle.user_ego[row]

    def train_of(user_id: str) -> list[int]:
        row = rows.get(user_id)
        return [] if row is None else train[row]

    user_vectors = {
        user: _final(ego_of(user), layers, train_of(user) + items, degrees)
        for user, items in posted.items()
    }
    sums = np.zeros((bundle.n_items, bundle.dim))
    for row in range(bundle.n_users):
        if train[row]:
            contribution = _contribution(bundle.user_ego[row], layers, train[row], degrees)
            for item in train[row]:
                sums[item] += contribution
    online_degree = np.zeros(bundle.n_items, dtype=np.int64)
    for user, items in posted.items():
        after = [
            _contribution(ego_of(user), layers, train_of(user) + items[: k + 1], degrees)
            for k in range(len(items))
        ]
        for t, item in enumerate(items):
            sums[item] += after[min(t + window - 1, len(items) - 1)]
            online_degree[item] += 1
    total_degree = np.maximum(degrees + online_degree, 1)
    item_vectors = (layers[0].astype(np.float64) + sums / np.sqrt(total_degree)[:, None]) / (
        layers.shape[0] + 1
    )
    return Reference(user_vectors, posted, item_vectors)
