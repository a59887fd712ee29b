"""Incremental fine-tuning of one user vector against frozen item embeddings (numpy only).

A few full-batch gradient steps of the BPR objective over *all* pairs (positive, sampled
negative) of the user, plus a proximal term that keeps the vector near where it started:

    L(u) = -mean_{i in P, j in N} log sigmoid(u . (e_i - e_j)) + prox / 2 * ||u - u0||^2

With P positives and N negatives the scores cost O((P + N) * dim) and the pairwise weights
O(P * N) per step, so an update of a typical user takes a few milliseconds on a CPU. Item
embeddings are only read. A new user starts from ``start_vec = None`` (zeros) or whatever
the caller passes (the service passes the mean user vector), and folds in from its first
positives.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def sample_negatives(
    n_items: int, positives: np.ndarray, n_neg: int, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``n_neg`` distinct item indices in ``[0, n_items)`` that are not ``positives``."""
    n_free = n_items - len(positives)
    if n_free <= 0:
        return np.empty(0, dtype=np.int64)
    if n_free <= 2 * n_neg:
        free = np.setdiff1d(np.arange(n_items), positives, assume_unique=True)
        return rng.permutation(free)[:n_neg]
    draws = rng.choice(n_items, size=min(n_items, 2 * n_neg + len(positives)), replace=False)
    return draws[~np.isin(draws, positives)][:n_neg]


def finetune_user(
    item_emb: np.ndarray,
    start_vec: np.ndarray | None,
    positives: np.ndarray,
    rng: np.random.Generator,
    steps: int,
    lr: float,
    n_neg: int,
    prox: float,
) -> np.ndarray:
    """Return the user vector after ``steps`` BPR gradient steps; inputs are not modified.

    ``item_emb`` (n_items, dim) float32; ``start_vec`` (dim,) or None for a new user (zeros);
    ``positives`` item indices the user interacted with. Negatives (``n_neg`` per step) are
    drawn uniformly from the other items. Returns a new float32 vector of shape (dim,).
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
    positives = np.unique(np.asarray(positives, dtype=np.int64))
    if positives.size and (positives[0] < 0 or positives[-1] >= n_items):
        raise ValueError(f"positives must be item indices in [0, {n_items})")
    user = start.copy()
    if positives.size == 0:
        return user.astype(np.float32)
    pos_emb = item_emb[positives].astype(np.float64)
    for _ in range(steps):
        negatives = sample_negatives(n_items, positives, n_neg, rng)
        if negatives.size == 0:
            break
        neg_emb = item_emb[negatives].astype(np.float64)
        margins = (pos_emb @ user)[:, None] - (neg_emb @ user)[None, :]
        weights = 1.0 - _sigmoid(margins)
        n_pairs = weights.size
        grad_bpr = (neg_emb.T @ weights.sum(axis=0) - pos_emb.T @ weights.sum(axis=1)) / n_pairs
        user -= lr * (grad_bpr + prox * (user - start))
    if not np.isfinite(user).all():
        raise ValueError("fine-tuning diverged (non-finite user vector); lower finetune_lr")
    return user.astype(np.float32)
