"""Incremental update of one user vector against frozen item embeddings (numpy only).

Three methods, each given ALL the user's positives ``P`` (training + posted):

- ``propagate`` (the default whenever the bundle carries the student's LightGCN layers): the
  user's final LightGCN embedding recomputed over the enlarged neighbourhood,
  ``u = mean_l u^(l)`` with ``u^(0)`` the user's ego embedding (the mean ego for a new user) and
  ``u^(l) = sum_{i in P} e_i^(l-1) / sqrt(|P| deg_i)`` (:func:`bundle.fold_in_user`). It is
  exactly what the student computes for that user with those edges, item side held fixed;
  parameter-free, O(L * P * dim). Chosen by ``bench/finetune_select.py``
  (bench/results/finetune-select.md).
- ``mean``: ``u = u0 + beta / s * mean_{i in P} e_i`` from the bundle's vector ``u0``, a step
  towards the centroid of the user's items (the default for bundles without layers).
- ``bpr``: a few gradient steps of the BPR objective over all pairs (positive, sampled
  negative), plus a proximal term that keeps the user's scores near where they started:

    L(u) = -mean_{i in P, j in N} log sigmoid(u . (e_i - e_j)) + prox / 2 * s * ||u - u0||^2

  Steps are ``u <- u - lr / s * grad L``. With at most ``n_neg`` positives and ``n_neg``
  negatives per step a step costs O(n_neg * dim + n_neg^2): milliseconds per update.

``s = mean(e_kd^2)`` is the item embeddings' mean squared coordinate; dividing by it makes
both methods invariant to scaling items by c and users by 1/c (the updated scores do not
change), so ``beta``, ``lr`` and ``prox`` do not depend on the scale of the exported
embeddings. Item embeddings are only read. A new user starts from ``start_vec = None``
(zeros) or whatever the caller passes (the service passes the mean user vector), and folds
in from its first positives.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

FinetuneMethod = Literal["propagate", "mean", "bpr"]
FinetuneSetting = Literal["auto", "propagate", "mean", "bpr"]
StepMethod = Literal["mean", "bpr"]


def resolve_method(
    setting: FinetuneSetting, has_layers: bool, model_version: str
) -> FinetuneMethod:
    """The update method to use: ``auto`` is ``propagate`` when the bundle has layers, else mean.

    Raises ValueError when ``propagate`` is asked for and the bundle has no layers.
    """
    if setting == "auto":
        return "propagate" if has_layers else "mean"
    if setting == "propagate" and not has_layers:
        raise ValueError(
            f"PROMPTMM_FINETUNE_METHOD=propagate needs the student's LightGCN layers, but bundle "
            f"{model_version} has no propagation.npz: re-export it, or choose auto, mean or bpr"
        )
    return setting


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def mean_square(item_emb: np.ndarray) -> float:
    """Mean squared coordinate of ``item_emb`` (n_items, dim): the step preconditioner."""
    return float(np.mean(np.square(item_emb, dtype=np.float64)))


def sample_negatives(
    n_items: int, positives: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``size`` item indices drawn uniformly, with replacement, from the non-``positives``."""
    allowed = np.ones(n_items, dtype=bool)
    allowed[positives] = False
    free = np.flatnonzero(allowed)
    if free.size == 0:
        return np.empty(0, dtype=np.int64)
    return free[rng.integers(0, free.size, size=size)]


def mean_fold_in(
    item_emb: np.ndarray, start: np.ndarray, positives: np.ndarray, beta: float, item_scale: float
) -> np.ndarray:
    """``start + beta / s * mean_{i in P} e_i``: move towards the centroid of the positives.

    Dividing by ``s`` (the items' mean squared coordinate) makes ``beta`` scale-free: scaling
    items by ``c`` and users by ``1 / c`` leaves every updated score unchanged.
    """
    centroid = item_emb[positives].astype(np.float64).mean(axis=0)
    return np.asarray(start + (beta / item_scale) * centroid)


def finetune_user(
    item_emb: np.ndarray,
    start_vec: np.ndarray | None,
    positives: np.ndarray,
    rng: np.random.Generator,
    steps: int,
    lr: float,
    n_neg: int,
    prox: float,
    *,
    item_scale: float | None = None,
    method: StepMethod = "mean",
    beta: float = 0.3,
) -> np.ndarray:
    """Return the updated user vector (``method``: see the module); inputs are not modified.

    ``item_emb`` (n_items, dim) float32; ``start_vec`` (dim,) or None for a new user (zeros);
    ``positives`` item indices the user interacted with. ``method="mean"`` uses ``beta``
    only (``rng``, ``steps``, ``lr``, ``n_neg`` and ``prox`` are still checked, unused); for
    ``method="bpr"`` each of ``steps`` steps draws ``n_neg`` fresh
    negatives uniformly (with replacement) from the other items, and uses every positive, or
    ``n_neg`` of them drawn with replacement when there are more. ``item_scale`` is ``s``
    above (computed from ``item_emb`` when None; pass it to save the pass over the catalog).
    Returns a new float32 vector of shape (dim,).
    """
    if item_emb.ndim != 2:
        raise ValueError(f"item_emb must be (n_items, dim), got shape {item_emb.shape}")
    n_items, dim = item_emb.shape
    start = np.zeros(dim) if start_vec is None else np.asarray(start_vec, dtype=np.float64)
    if start.shape != (dim,):
        raise ValueError(f"start_vec must have shape ({dim},), got {start.shape}")
    if steps < 0 or lr <= 0 or n_neg < 1 or prox < 0:
        raise ValueError(
            f"expected steps >= 0, lr > 0, n_neg >= 1, prox >= 0; got steps={steps}, lr={lr}, "
            f"n_neg={n_neg}, prox={prox}"
        )
    if method not in ("mean", "bpr") or not beta >= 0:
        raise ValueError(f"expected method 'mean' or 'bpr' and beta >= 0; got {method!r}, {beta}")
    positives = np.unique(np.asarray(positives, dtype=np.int64))
    if positives.size and (positives[0] < 0 or positives[-1] >= n_items):
        raise ValueError(f"positives must be item indices in [0, {n_items})")
    scale = mean_square(item_emb) if item_scale is None else float(item_scale)
    if not scale > 0:
        raise ValueError(f"item_scale must be > 0 (item embeddings all zero?), got {scale}")
    user = start.copy()
    if positives.size == 0:
        return user.astype(np.float32)
    if method == "mean":
        return mean_fold_in(item_emb, start, positives, beta, scale).astype(np.float32)
    negatives = sample_negatives(n_items, positives, steps * n_neg, rng)
    if negatives.size == 0:
        return user.astype(np.float32)
    for step in range(steps):
        batch = positives
        if positives.size > n_neg:
            batch = positives[rng.integers(0, positives.size, size=n_neg)]
        pos_emb = item_emb[batch].astype(np.float64)
        neg_emb = item_emb[negatives[step * n_neg : (step + 1) * n_neg]].astype(np.float64)
        margins = (pos_emb @ user)[:, None] - (neg_emb @ user)[None, :]
        weights = _sigmoid(-margins)
        grad_bpr = (
            neg_emb.T @ weights.sum(axis=0) - pos_emb.T @ weights.sum(axis=1)
        ) / margins.size
        user -= (lr / scale) * grad_bpr + (lr * prox) * (user - start)
    if not (np.abs(user) <= np.finfo(np.float32).max).all():
        raise ValueError("fine-tuning diverged (user vector beyond float32); lower finetune_lr")
    return user.astype(np.float32)
