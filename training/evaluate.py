"""All-ranking evaluation of user/item embeddings (paper §4.1.2, method.md section 6).

Scores are inner products ``user_emb @ item_emb.T`` over **every** item, computed in user
chunks on the embeddings' device (CPU or CUDA), accumulated in float64 and rounded to
float32 so they do not depend on the chunking. Items of the ``exclude`` matrices (the
training items; training + validation items when testing) get score ``-inf``.

Ranking rule, shared by :func:`evaluate` and :func:`topk_items` (the service's FAISS top-K is
compared against :func:`topk_items`): **score descending, ties broken by the smaller item
index first**. :func:`torch.topk` alone does not promise an order among equal scores, so
the top-K is re-sorted by (score desc, index asc), and rows where equal scores straddle the
K-th place fall back to a full stable sort of that row. Excluded items are never counted as
hits; :func:`topk_items` reports them as ``-1``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from training.metrics import NdcgKind, ranking_metrics

__all__ = ["evaluate", "topk_items"]

logger = logging.getLogger(__name__)


def _check_embeddings(user_emb: torch.Tensor, item_emb: torch.Tensor) -> None:
    if user_emb.ndim != 2 or item_emb.ndim != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(
            "user_emb (U, d) and item_emb (I, d) must be 2-D with the same d, got "
            f"{tuple(user_emb.shape)} and {tuple(item_emb.shape)}"
        )
    if user_emb.device != item_emb.device:
        raise ValueError(f"embeddings on different devices: {user_emb.device}, {item_emb.device}")
    if not (bool(torch.isfinite(user_emb).all()) and bool(torch.isfinite(item_emb).all())):
        raise ValueError("embeddings contain NaN or inf: the model diverged")


def _as_csr(name: str, m: sp.spmatrix, shape: tuple[int, int]) -> sp.csr_matrix:
    if not sp.issparse(m) or tuple(m.shape) != shape:
        got = tuple(m.shape) if sp.issparse(m) else type(m).__name__
        raise ValueError(f"{name} must be a scipy sparse {shape} (users x items) matrix, got {got}")
    csr = sp.csr_matrix(m, copy=True)
    csr.eliminate_zeros()
    csr.sum_duplicates()
    csr.sort_indices()
    return csr


def _row_entries(csr: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(local_row, item)`` of the non-zeros of ``csr[users]``; ``local_row`` indexes ``users``."""
    sub = csr[users]
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    return rows, sub.indices.astype(np.int64)


def _masked_scores(
    user_emb: torch.Tensor,
    item_t64: torch.Tensor,
    users: np.ndarray,
    exclude: Sequence[sp.csr_matrix],
) -> torch.Tensor:
    """(n, I) float32 scores of ``users`` with excluded items set to ``-inf``.

    ``item_t64`` is ``item_emb.T`` (d, I) in float64. Scores are accumulated in float64 and
    rounded once to float32, so a user's scores do not depend on which other users share
    the chunk (float32 BLAS/cuBLAS kernels sum in shape-dependent orders, which flipped
    near-ties between a 1-user and a 100-user call).
    """
    device = user_emb.device
    index = torch.from_numpy(users).to(device)
    chunk64 = user_emb.index_select(0, index).to(torch.float64)
    scores = (chunk64 @ item_t64).to(torch.float32)
    for m in exclude:
        rows, cols = _row_entries(m, users)
        if rows.size:
            scores[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = -np.inf
    return scores


def _ranked_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row by (score desc, index asc): ``(values (n, k), indices (n, k))``."""
    n_items = scores.shape[1]
    values, indices = torch.topk(scores, min(k + 1, n_items), dim=1, sorted=True)
    # equal scores straddle the k-th place iff the (k+1)-th value equals the k-th
    straddle = values[:, k] == values[:, k - 1] if k < n_items else None
    values, indices = values[:, :k], indices[:, :k]
    by_index, perm = torch.sort(indices, dim=1)
    values = values.gather(1, perm)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    values, indices = values.gather(1, order), by_index.gather(1, order)
    if straddle is not None and bool(straddle.any()):
        rows = straddle.nonzero().reshape(-1)
        full = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        values[rows] = full.values[:, :k]
        indices[rows] = full.indices[:, :k]
    return values, indices


def _is_member(csr: sp.csr_matrix, users: np.ndarray, items: torch.Tensor) -> torch.Tensor:
    """(n, k) bool: whether ``items[j, c]`` is a stored entry of row ``users[j]`` of ``csr``."""
    rows, cols = _row_entries(csr, users)
    n_items = csr.shape[1]
    keys = torch.from_numpy(rows * n_items + cols).to(items.device)  # sorted: CSR order
    if keys.numel() == 0:
        return torch.zeros_like(items, dtype=torch.bool)
    local = torch.arange(items.shape[0], device=items.device).reshape(-1, 1)
    query = local * n_items + items
    pos = torch.searchsorted(keys, query.reshape(-1)).clamp_(max=keys.numel() - 1)
    member: torch.Tensor = (keys[pos] == query.reshape(-1)).reshape(items.shape)
    return member


def _prepared_exclusions(
    user_emb: torch.Tensor, item_emb: torch.Tensor, exclude: Sequence[sp.spmatrix]
) -> list[sp.csr_matrix]:
    """Check the embeddings; return ``exclude`` as CSR matrices over (U, I)."""
    _check_embeddings(user_emb, item_emb)
    shape = (user_emb.shape[0], item_emb.shape[0])
    return [_as_csr(f"exclude[{j}]", m, shape) for j, m in enumerate(exclude)]


def _ranked_chunks(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    users: np.ndarray,
    exclude: list[sp.csr_matrix],
    k: int,
    chunk_size: int,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``(chunk, values, indices)``: the masked top-``k`` of ``users``, a chunk at a time."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with torch.no_grad():
        item_t64 = item_emb.to(torch.float64).T
        for start in range(0, users.size, chunk_size):
            chunk = users[start : start + chunk_size]
            values, indices = _ranked_topk(_masked_scores(user_emb, item_t64, chunk, exclude), k)
            yield chunk, values, indices


def evaluate(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    target: sp.spmatrix,
    exclude: Sequence[sp.spmatrix],
    ks: Sequence[int] = (10, 20, 50),
    ndcg: NdcgKind = "standard",
    chunk_size: int = 2048,
) -> dict[str, float]:
    """All-ranking Recall/NDCG/Precision/Hit at each ``k``, averaged over evaluated users.

    Args:
        user_emb: (U, d) final user embeddings.
        item_emb: (I, d) final item embeddings, same device.
        target: (U, I) held-out interactions; users with no target item are skipped.
        exclude: (U, I) matrices whose items are masked (training; + validation when testing).
        ks: cut-offs, each in ``[1, I]``.
        ndcg: ``"standard"`` or ``"lineage"`` (see :mod:`training.metrics`).
        chunk_size: users scored at once (memory: ``chunk_size * I`` floats).

    Returns:
        ``{"recall@k", "ndcg@k", "precision@k", "hit@k"}`` for each ``k`` plus ``"users"``
        (the number of users evaluated).
    """
    excl = _prepared_exclusions(user_emb, item_emb, exclude)
    n_items = item_emb.shape[0]
    target_csr = _as_csr("target", target, (user_emb.shape[0], n_items))
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1 or max(ks) > n_items:
        raise ValueError(f"every k in ks must be in [1, {n_items}] (the number of items), got {ks}")
    n_target_all = np.diff(target_csr.indptr)
    users = np.flatnonzero(n_target_all > 0)
    if users.size == 0:
        raise ValueError("target has no interaction: nothing to evaluate")
    totals: dict[str, torch.Tensor] = {}
    for chunk, values, indices in _ranked_chunks(
        user_emb, item_emb, users, excl, max(ks), chunk_size
    ):
        hits = _is_member(target_csr, chunk, indices) & torch.isfinite(values)
        n_target = torch.from_numpy(n_target_all[chunk]).to(user_emb.device)
        for name, per_user in ranking_metrics(hits, n_target, ks, ndcg).items():
            totals[name] = totals.get(name, 0.0) + per_user.to(torch.float64).sum()
    result = {name: float(total) / users.size for name, total in totals.items()}
    result["users"] = float(users.size)
    logger.debug("evaluated %d users: %s", users.size, result)
    return result


def topk_items(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    users: torch.Tensor,
    exclude: Sequence[sp.spmatrix],
    k: int,
    chunk_size: int = 2048,
) -> torch.Tensor:
    """The top-``k`` items of each user, ranked exactly as :func:`evaluate` ranks them.

    Args:
        user_emb: (U, d) final user embeddings.
        item_emb: (I, d) final item embeddings.
        users: LongTensor (n,) of user indices.
        exclude: (U, I) matrices whose items are never recommended.
        k: list length, in ``[1, I]``.
        chunk_size: users scored at once.

    Returns:
        LongTensor (n, k) on the embeddings' device; ``-1`` fills the tail of a user who has
        fewer than ``k`` items left after exclusion.
    """
    excl = _prepared_exclusions(user_emb, item_emb, exclude)
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be in [1, {n_items}] (the number of items), got {k}")
    user_np = users.detach().cpu().numpy().astype(np.int64).reshape(-1)
    if user_np.size and (user_np.min() < 0 or user_np.max() >= n_users):
        raise ValueError(
            f"users must be indices in [0, {n_users}), got {user_np.min()}..{user_np.max()}"
        )
    parts = [
        torch.where(torch.isfinite(values), indices, -1)
        for _, values, indices in _ranked_chunks(user_emb, item_emb, user_np, excl, k, chunk_size)
    ]
    if not parts:
        return torch.empty(0, k, dtype=torch.long, device=user_emb.device)
    return torch.cat(parts)
