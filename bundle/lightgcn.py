"""The LightGCN maths of a bundle's users and items, in numpy: the one home of the fold-in.

A bundle with layers (``models/README.md``) carries the student's user egos and item layers
``0..L-1``; its final embeddings are the mean of the layers over the symmetric normalised
training graph. Everything here is a pure function of those arrays.

User side (:func:`fold_in_user`, :func:`user_layer_sums`, :func:`user_final`): a user's layer
``l >= 1`` is ``S_u^(l) / sqrt(deg_u)`` with the un-normalised running sum

    S_u^(l) = sum_{i in items(u)} item_layers[l-1, i] / sqrt(deg_i)

over the items' *training* degrees (an item of degree 0 counts as 1), so adding an item to a
user costs ``O(L * dim)`` whatever the user's history.

Item side (:func:`user_contribution`, :func:`item_training_sum`, :func:`item_final`): an item's
layer ``l >= 1`` is ``sum_{u in users(i)} u^(l-1) / sqrt(deg_u deg_i)``. Summed over the
layers, an item's final embedding is

    final_i = (e_i^(0) + R_i / sqrt(deg_i)) / (L + 1),
    R_i     = sum_{u in users(i)} c_u,    c_u = sum_{l=0..L-1} u^(l) / sqrt(deg_u),

so ``R_i`` is an un-normalised running sum over the item's users too. Its training part is
recovered from the exported final embedding without the training graph
(:func:`item_training_sum`).
"""

from __future__ import annotations

import numpy as np

PROPAGATION_BLOCK = 1 << 12
"""Training entries propagated per step of :func:`propagate_to_users`: bounds its memory (~2 MB
per float64 temporary at dim 64; 1 << 16 left 50 MB of freed heap in a tiktok worker's RSS)."""


def fold_in_user(
    user_ego_row: np.ndarray,
    item_layers: np.ndarray,
    items: np.ndarray,
    item_degrees: np.ndarray,
) -> np.ndarray:
    """A user's final LightGCN embedding from their ego row and their items' layer rows.

    Returns the float64 (dim,) mean over ``l = 0..L`` of ``u^(l)``, with
    ``u^(0) = user_ego_row`` and ``u^(l) = Σ_{i ∈ items} item_layers[l-1, i] /
    sqrt(len(items) * max(item_degrees[i], 1))``: the symmetric normalisation
    ``D^-1/2 A D^-1/2`` of training, with the user's degree ``len(items)``. Without items
    every ``u^(l)``, ``l >= 1``, is 0. For a training user and their training items
    (:meth:`Bundle.seen_items`) this reproduces ``user_embeddings``; adding new items folds
    them in the same way.

    Args:
        user_ego_row: (dim,) the user's ego embedding (``Bundle.user_ego[u]``, or any start
            vector for a new user).
        item_layers: (L, n_items, dim) ``Bundle.item_layers``.
        items: (k,) unique int item indices the user interacted with.
        item_degrees: (n_items,) the items' *training* degrees, ``Bundle.item_popularity()``
            (an item with degree 0 counts as degree 1).

    Raises:
        ValueError: ``user_ego_row`` is not (dim,) or ``item_layers`` not (L, n_items, dim).
    """
    if item_layers.ndim != 3 or user_ego_row.shape != item_layers.shape[2:]:
        raise ValueError(
            f"user_ego_row {user_ego_row.shape} and item_layers {item_layers.shape} must be "
            "(dim,) and (L, n_items, dim)"
        )
    return user_final(user_ego_row, user_layer_sums(item_layers, items, item_degrees), items.size)


def propagate_to_users(
    indptr: np.ndarray, indices: np.ndarray, item_rows: np.ndarray, item_degrees: np.ndarray
) -> np.ndarray:
    """One LightGCN hop from items to users over CSR training rows, float64 (U, dim).

    Row ``u`` is ``Σ_{i ∈ items(u)} item_rows[i] / sqrt(deg_u · deg_i)`` (0 for a user without
    items), with ``deg_u`` the row's length and ``deg_i = item_degrees[i]`` (the training
    degrees, :meth:`Bundle.item_popularity`). Entries are added ``PROPAGATION_BLOCK`` at a time to
    bound memory.
    """
    user_degrees = np.diff(indptr)
    result = np.zeros((user_degrees.shape[0], item_rows.shape[1]))
    if indices.size == 0:
        return result
    owners = np.repeat(np.arange(user_degrees.shape[0]), user_degrees)
    weights = 1.0 / np.sqrt(user_degrees[owners].astype(np.float64) * item_degrees[indices])
    for start in range(0, indices.size, PROPAGATION_BLOCK):
        stop = start + PROPAGATION_BLOCK
        rows = owners[start:stop]
        firsts = np.flatnonzero(np.diff(rows, prepend=-1))
        weighted = item_rows[indices[start:stop]].astype(np.float64) * weights[start:stop, None]
        result[rows[firsts]] += np.add.reduceat(weighted, firsts, axis=0)
    return result


def fold_in_all_users(
    user_ego: np.ndarray,
    item_layers: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    item_degrees: np.ndarray,
) -> np.ndarray:
    """:func:`fold_in_user` for every user over their CSR training rows, float64 (U, dim).

    The layers are summed first (the propagation is linear), then propagated to the users once.
    """
    n_layers = item_layers.shape[0]
    result = user_ego.astype(np.float64)
    if n_layers:
        layer_sum = item_layers.sum(axis=0, dtype=np.float64)
        result += propagate_to_users(indptr, indices, layer_sum, item_degrees)
    result /= n_layers + 1
    return result


def user_layer_sums(
    item_layers: np.ndarray, items: np.ndarray, item_degrees: np.ndarray
) -> np.ndarray:
    """``S^(l)`` for ``l = 1..L`` of a user holding ``items``: float64 (L, dim).

    Row ``l - 1`` is ``sum_{i in items} item_layers[l-1, i] / sqrt(max(item_degrees[i], 1))``.
    """
    if items.size == 0:
        return np.zeros((item_layers.shape[0], item_layers.shape[2]))
    weights = 1.0 / np.sqrt(np.maximum(item_degrees[items], 1).astype(np.float64))
    return np.asarray(np.einsum("k,lkd->ld", weights, item_layers[:, items, :].astype(np.float64)))


def user_final(ego: np.ndarray, sums: np.ndarray, degree: int) -> np.ndarray:
    """A user's final embedding, float64 (dim,): ``(ego + sum_l S^(l) / sqrt(degree)) / (L+1)``.

    ``sums`` is (L, dim) from :func:`user_layer_sums`; a user of degree 0 has only the ego.
    """
    n_layers = sums.shape[0]
    result = np.asarray(ego, dtype=np.float64).copy()
    if n_layers and degree > 0:
        result += sums.sum(axis=0) / np.sqrt(degree)
    return np.asarray(result / (n_layers + 1))


def user_contribution(ego: np.ndarray, sums: np.ndarray, degree: int) -> np.ndarray:
    """What one edge of this user adds to its item's ``R``: ``sum_{l<L} u^(l) / sqrt(degree)``.

    ``u^(0) = ego`` and ``u^(l) = S^(l) / sqrt(degree)``; float64 (dim,). ``degree >= 1``.
    """
    if degree < 1:
        raise ValueError(f"a user with an edge has degree >= 1, got {degree}")
    scale = 1.0 / np.sqrt(degree)
    lower = np.asarray(ego, dtype=np.float64) + sums[:-1].sum(axis=0) * scale
    return np.asarray(lower * scale)


def item_training_sum(
    final: np.ndarray, ego: np.ndarray, degree: np.ndarray, n_layers: int
) -> np.ndarray:
    """``R_i`` of items over their training users, from the bundle: float64 (..., dim).

    Inverts :func:`item_final`: ``sqrt(max(degree, 1)) * ((L+1) * final - ego)``.
    """
    scale = np.sqrt(np.maximum(degree, 1).astype(np.float64))
    lifted = (n_layers + 1) * final.astype(np.float64) - ego.astype(np.float64)
    return np.asarray(lifted * np.expand_dims(scale, -1))


def item_final(ego: np.ndarray, sums: np.ndarray, degree: np.ndarray, n_layers: int) -> np.ndarray:
    """Items' final embeddings, float64 (..., dim): ``(ego + R / sqrt(max(degree, 1))) / (L+1)``."""
    scale = 1.0 / np.sqrt(np.maximum(degree, 1).astype(np.float64))
    return np.asarray((ego.astype(np.float64) + sums * np.expand_dims(scale, -1)) / (n_layers + 1))
