"""User-vector strategies: how a user's vector follows the items they post (pure computing).

A strategy turns a user's items into a vector through running sums, so that adding items
costs ``O(items added * L * dim)`` whatever the user already holds. It only computes: the
sums live in :class:`UserSums` values that :mod:`service.online` keeps, and nothing here
reads or writes a store.

- :class:`PropagateStrategy` (``propagate``): the student's LightGCN fold-in over the user's
  items (training + posted), item side held at the training degrees
  (:func:`bundle.lightgcn.user_final`); it also gives what each of the user's online edges
  adds to its item (:func:`bundle.lightgcn.user_contribution`).
- :class:`MeanStrategy` (``mean``): ``start + beta / s * mean_{i in P} e_i``
  (:func:`service.finetune.mean_fold_in`) from the sum of the items' vectors.

The stateful ``bpr`` update is not a running sum; it stays in :mod:`service.finetune`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bundle import Bundle
from bundle.lightgcn import user_contribution, user_final, user_layer_sums


@dataclass(frozen=True)
class UserSums:
    """A user's running state: start vector (dim,), sums (n_terms, dim), item count."""

    start: np.ndarray
    sums: np.ndarray
    degree: int


class UserStrategy(Protocol):
    def start(self, row: int | None, train_items: np.ndarray) -> UserSums:
        """The state of bundle row ``row`` (None: a new user) holding ``train_items``."""

    def terms(self, items: np.ndarray) -> np.ndarray:
        """What each of ``items`` adds to the sums: float64 (len(items), n_terms, dim)."""

    def vector(self, state: UserSums) -> np.ndarray:
        """The float32 vector of a user in ``state``."""


def extend(state: UserSums, terms: np.ndarray) -> tuple[UserSums, np.ndarray, np.ndarray]:
    """``state`` after adding items one at a time: (final state, sums and degree after each).

    ``terms`` is :meth:`UserStrategy.terms` of the items in order; the prefix sums are
    (n, n_terms, dim), the degrees (n,) int64.
    """
    prefix = state.sums + np.cumsum(terms, axis=0)
    degrees = state.degree + np.arange(1, terms.shape[0] + 1, dtype=np.int64)
    final = UserSums(state.start, prefix[-1], int(degrees[-1])) if terms.shape[0] else state
    return final, prefix, degrees


class PropagateStrategy:
    """LightGCN fold-in with the bundle's egos and item layers (see the module)."""

    def __init__(self, bundle: Bundle) -> None:
        if bundle.user_ego is None or bundle.item_layers is None:
            raise ValueError(f"bundle {bundle.model_version} has no LightGCN layers to fold in")
        self._ego = bundle.user_ego
        self._mean_ego = bundle.user_ego.mean(axis=0).astype(np.float64)
        self._layers = bundle.item_layers
        self._weights = 1.0 / np.sqrt(np.maximum(bundle.item_popularity(), 1).astype(np.float64))
        self._degrees = bundle.item_popularity()

    @property
    def n_layers(self) -> int:
        return int(self._layers.shape[0])

    def start(self, row: int | None, train_items: np.ndarray) -> UserSums:
        ego = self._mean_ego if row is None else self._ego[row].astype(np.float64)
        sums = user_layer_sums(self._layers, train_items, self._degrees)
        return UserSums(ego, sums, int(train_items.size))

    def terms(self, items: np.ndarray) -> np.ndarray:
        layers = self._layers[:, items, :].astype(np.float64) * self._weights[items][None, :, None]
        return np.asarray(layers.transpose(1, 0, 2))

    def vector(self, state: UserSums) -> np.ndarray:
        return user_final(state.start, state.sums, state.degree).astype(np.float32)

    def contributions(self, state: UserSums, prefix: np.ndarray, degrees: np.ndarray) -> np.ndarray:
        """:func:`~bundle.lightgcn.user_contribution` after each step of :func:`extend`:
        float64 (n, dim) for the user of ``state`` with ``prefix`` sums and ``degrees``."""
        if prefix.shape[0] == 0:
            return np.empty((0, state.start.shape[0]))
        if prefix.shape[0] == 1:
            return user_contribution(state.start, prefix[0], int(degrees[0]))[None, :]
        scale = 1.0 / np.sqrt(degrees.astype(np.float64))[:, None]
        lower = state.start[None, :] + prefix[:, :-1, :].sum(axis=1) * scale
        return np.asarray(lower * scale)


class MeanStrategy:
    """``start + beta / s * mean`` of the user's items' vectors (see the module)."""

    def __init__(self, bundle: Bundle, beta: float, item_scale: float) -> None:
        self._users = bundle.user_embeddings
        self._mean_user = bundle.user_embeddings.mean(axis=0).astype(np.float64)
        self._items = bundle.item_embeddings
        self._step = beta / item_scale

    def start(self, row: int | None, train_items: np.ndarray) -> UserSums:
        start = self._mean_user if row is None else self._users[row].astype(np.float64)
        total = self._items[train_items].astype(np.float64).sum(axis=0, keepdims=True)
        return UserSums(start, total, int(train_items.size))

    def terms(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self._items[items].astype(np.float64)[:, None, :])

    def vector(self, state: UserSums) -> np.ndarray:
        if state.degree == 0:
            return state.start.astype(np.float32)
        return np.asarray(state.start + self._step * state.sums[0] / state.degree, np.float32)
