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

Nothing dense over users x items ever exists, and nothing per chunk runs on the host: the
masked and target entries of the evaluated users are put on the device once, as sorted
``position * I + item`` keys (:class:`Evaluator` keeps them across calls, so a training run
prepares its validation split once), and each chunk takes a slice of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from training.metrics import NdcgKind, ranking_metrics

__all__ = ["Evaluator", "evaluate", "ranked_topk", "topk_items"]

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


class _RowKeys:
    """Rows ``users`` of a CSR matrix, kept on a device as sorted keys ``j * I + item``.

    ``j`` is the position of the row in ``users`` (so keys are sorted when CSR indices are),
    and the host keeps where each position's keys start: a chunk of positions
    ``start..stop-1`` is one slice, with no host work or copy per chunk.
    """

    def __init__(self, csr: sp.csr_matrix, users: np.ndarray, device: torch.device) -> None:
        sub = csr[users]
        self.n_items = int(csr.shape[1])
        self.offsets = sub.indptr.astype(np.int64)
        rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
        self.keys = torch.from_numpy(rows * self.n_items + sub.indices.astype(np.int64)).to(device)

    def _slice(self, start: int, stop: int) -> torch.Tensor:
        return self.keys[int(self.offsets[start]) : int(self.offsets[stop])]

    def entries(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row - start, item)`` of every stored entry of positions ``start..stop-1``."""
        keys = self._slice(start, stop)
        return keys // self.n_items - start, keys % self.n_items

    def contains(self, start: int, items: torch.Tensor) -> torch.Tensor:
        """(n, k) bool: whether ``items[j, c]`` is stored in the row at position ``start + j``."""
        keys = self._slice(start, start + items.shape[0])
        if keys.numel() == 0:
            return torch.zeros_like(items, dtype=torch.bool)
        local = torch.arange(start, start + items.shape[0], device=items.device).reshape(-1, 1)
        query = (local * self.n_items + items).reshape(-1)
        pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
        member: torch.Tensor = (keys[pos] == query).reshape(items.shape)
        return member


def _masked_scores(
    user_emb: torch.Tensor,
    item_t64: torch.Tensor,
    index: torch.Tensor,
    masks: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """(n, I) float32 scores of users ``index`` with the ``masks`` entries set to ``-inf``.

    ``item_t64`` is ``item_emb.T`` (d, I) in float64; each mask is ``(row, item)`` index
    tensors with rows local to ``index``. Scores are accumulated in float64 and rounded once
    to float32, so a user's scores do not depend on which other users share the chunk
    (float32 BLAS/cuBLAS kernels sum in shape-dependent orders, which flipped near-ties
    between a 1-user and a 100-user call).
    """
    chunk64 = user_emb.index_select(0, index).to(torch.float64)
    scores = (chunk64 @ item_t64).to(torch.float32)
    for rows, cols in masks:
        scores[rows, cols] = -np.inf
    return scores


def ranked_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def _ranked_chunks(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    index: torch.Tensor,
    exclude: Sequence[_RowKeys],
    k: int,
    chunk_size: int,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(start, values, indices)``: the masked top-``k`` of the users ``index[start:...]``,
    a chunk at a time, all on the embeddings' device (``exclude`` rows follow ``index``)."""
    with torch.no_grad():
        item_t64 = item_emb.to(torch.float64).T
        for start in range(0, index.numel(), chunk_size):
            stop = min(start + chunk_size, index.numel())
            masks = [m.entries(start, stop) for m in exclude]
            scores = _masked_scores(user_emb, item_t64, index[start:stop], masks)
            values, indices = ranked_topk(scores, k)
            yield start, values, indices


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


class Evaluator:
    """All-ranking metrics against one held-out split, with its masks prepared once.

    The target and ``exclude`` rows of the evaluated users (those with a target item) go to
    ``device`` once, as sorted keys; each call then scores, masks, ranks and counts hits a
    chunk of users at a time on the device, and reads back only the summed metrics.

    Args:
        target: (U, I) held-out interactions; users with no target item are skipped.
        exclude: (U, I) matrices whose items are masked (training; + validation when testing).
        ks: cut-offs, each in ``[1, I]``.
        ndcg: ``"standard"`` or ``"lineage"`` (see :mod:`training.metrics`).
        chunk_size: users scored at once (memory: ``chunk_size * I`` floats).
        device: where the embeddings will be.
        shape: the expected (U, I) (default: ``target``'s).
    """

    def __init__(
        self,
        target: sp.spmatrix,
        exclude: Sequence[sp.spmatrix],
        ks: Sequence[int] = (10, 20, 50),
        ndcg: NdcgKind = "standard",
        chunk_size: int = 2048,
        device: torch.device | str = "cpu",
        shape: tuple[int, int] | None = None,
    ) -> None:
        if shape is None:
            if not sp.issparse(target) or target.ndim != 2:
                raise ValueError(f"target must be a 2-D scipy sparse matrix, got {target!r}")
            shape = (int(target.shape[0]), int(target.shape[1]))
        excl = [_as_csr(f"exclude[{j}]", m, shape) for j, m in enumerate(exclude)]
        target_csr = _as_csr("target", target, shape)
        self.shape, self.ndcg = shape, ndcg
        self.ks = [int(k) for k in ks]
        if not self.ks or min(self.ks) < 1 or max(self.ks) > shape[1]:
            raise ValueError(
                f"every k in ks must be in [1, {shape[1]}] (the number of items), got {self.ks}"
            )
        _check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        n_target = np.diff(target_csr.indptr)
        users = np.flatnonzero(n_target > 0)
        if users.size == 0:
            raise ValueError("target has no interaction: nothing to evaluate")
        device = torch.device(device)
        self.n_users = int(users.size)
        self._index = torch.from_numpy(users).to(device)
        self._n_target = torch.from_numpy(n_target[users].astype(np.int64)).to(device)
        self._target = _RowKeys(target_csr, users, device)
        self._exclude = [_RowKeys(m, users, device) for m in excl]

    def __call__(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> dict[str, float]:
        """``{"recall@k", "ndcg@k", "precision@k", "hit@k"}`` for each ``k``, averaged over
        the evaluated users, plus ``"users"`` (their number)."""
        _check_embeddings(user_emb, item_emb)
        if (user_emb.shape[0], item_emb.shape[0]) != self.shape:
            raise ValueError(
                f"embeddings of {user_emb.shape[0]} users and {item_emb.shape[0]} items, but "
                f"the evaluated split is {self.shape}"
            )
        if user_emb.device != self._index.device:
            raise ValueError(
                f"embeddings on {user_emb.device}, the evaluator on {self._index.device}"
            )
        totals: dict[str, torch.Tensor] = {}
        for start, values, indices in _ranked_chunks(
            user_emb, item_emb, self._index, self._exclude, max(self.ks), self.chunk_size
        ):
            hits = self._target.contains(start, indices) & torch.isfinite(values)
            n_target = self._n_target[start : start + hits.shape[0]]
            for name, values in ranking_metrics(hits, n_target, self.ks, self.ndcg).items():
                chunk_sum = values.to(torch.float64).sum()
                totals[name] = totals[name] + chunk_sum if name in totals else chunk_sum
        means = (torch.stack(list(totals.values())) / self.n_users).tolist()  # one read-back
        result = dict(zip(totals, means, strict=True))
        result["users"] = float(self.n_users)
        logger.debug("evaluated %d users: %s", self.n_users, result)
        return result


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
    _check_embeddings(user_emb, item_emb)
    shape = (int(user_emb.shape[0]), int(item_emb.shape[0]))
    evaluator = Evaluator(target, exclude, ks, ndcg, chunk_size, user_emb.device, shape)
    return evaluator(user_emb, item_emb)


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
    _check_embeddings(user_emb, item_emb)
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    excl = [_as_csr(f"exclude[{j}]", m, (n_users, n_items)) for j, m in enumerate(exclude)]
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be in [1, {n_items}] (the number of items), got {k}")
    _check_chunk_size(chunk_size)
    user_np = users.detach().cpu().numpy().astype(np.int64).reshape(-1)
    if user_np.size and (user_np.min() < 0 or user_np.max() >= n_users):
        raise ValueError(
            f"users must be indices in [0, {n_users}), got {user_np.min()}..{user_np.max()}"
        )
    device = user_emb.device
    masks = [_RowKeys(m, user_np, device) for m in excl]
    index = torch.from_numpy(user_np).to(device)
    parts = [
        torch.where(torch.isfinite(values), indices, -1)
        for _, values, indices in _ranked_chunks(user_emb, item_emb, index, masks, k, chunk_size)
    ]
    if not parts:
        return torch.empty(0, k, dtype=torch.long, device=device)
    return torch.cat(parts)
