"""Top-K ranking metrics on per-user hit matrices (paper §4.1.2, method.md section 6).

Input is what a ranker produced: ``hits[u, j]`` says whether the item at rank ``j`` (0-based)
of user ``u``'s ranked list is one of the user's target items, plus the number of target
items per user. Everything is vectorised over users; the functions return one value per user
so a caller can average over chunks.

NDCG definitions (``ndcg=``):

- ``"standard"``: ``DCG@K / IDCG@K`` with the ideal list holding ``min(K, |target|)`` hits.
- ``"lineage"``: the LATTICE/MMSSL/PromptMM reference code's variant: the ideal list holds
  only the hits actually *retrieved* in the top K (``IDCG = DCG of the sorted top-K hits``),
  which is never smaller than the standard value. 0 when nothing is retrieved.

Discount: ``1 / log2(rank + 2)`` for 0-based ``rank``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["NDCG_KINDS", "NdcgKind", "ranking_metrics"]

NdcgKind = Literal["standard", "lineage"]
NDCG_KINDS: tuple[str, ...] = ("standard", "lineage")


def _check(hits: torch.Tensor, n_target: torch.Tensor, ks: Sequence[int], ndcg: str) -> None:
    if hits.ndim != 2:
        raise ValueError(f"hits must be (n_users, K_max), got shape {tuple(hits.shape)}")
    if n_target.shape != (hits.shape[0],):
        raise ValueError(
            f"n_target must be ({hits.shape[0]},) to match hits, got {tuple(n_target.shape)}"
        )
    if not ks or any(int(k) < 1 or int(k) > hits.shape[1] for k in ks):
        raise ValueError(f"every k in ks must be in [1, {hits.shape[1]}] (hits columns), got {ks}")
    if ndcg not in NDCG_KINDS:
        raise ValueError(f"ndcg must be one of {NDCG_KINDS}, got {ndcg!r}")
    if bool((n_target < 1).any()):
        raise ValueError("every user passed to ranking_metrics needs at least one target item")


def ranking_metrics(
    hits: torch.Tensor,
    n_target: torch.Tensor,
    ks: Sequence[int] = (10, 20, 50),
    ndcg: NdcgKind = "standard",
) -> dict[str, torch.Tensor]:
    """Recall, NDCG, precision and hit rate at each ``k``, per user.

    Args:
        hits: (n, K_max) bool or 0/1; column ``j`` is rank ``j`` of the user's list.
        n_target: (n,) number of target items of each user (>= 1).
        ks: cut-offs, each in ``[1, K_max]``.
        ndcg: ``"standard"`` or ``"lineage"`` (see the module docstring).

    Returns:
        ``{"recall@k", "ndcg@k", "precision@k", "hit@k"}`` for each ``k``, each a float32
        tensor (n,) on ``hits``' device.
    """
    _check(hits, n_target, ks, ndcg)
    h = hits.to(torch.float32)
    n_target = n_target.to(device=h.device, dtype=torch.float32)
    k_max = h.shape[1]
    ranks = torch.arange(k_max, device=h.device, dtype=torch.float32)
    discount = 1.0 / torch.log2(ranks + 2.0)
    # ideal[j] = DCG of j leading hits (ideal[0] = 0)
    ideal = torch.cat([discount.new_zeros(1), torch.cumsum(discount, dim=0)])
    cum_hits = torch.cumsum(h, dim=1)
    cum_dcg = torch.cumsum(h * discount, dim=1)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        k = int(k)
        n_hits = cum_hits[:, k - 1]
        dcg = cum_dcg[:, k - 1]
        n_ideal = torch.clamp(n_target, max=k) if ndcg == "standard" else n_hits
        idcg = ideal[n_ideal.long()]
        out[f"recall@{k}"] = n_hits / n_target
        out[f"ndcg@{k}"] = torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))
        out[f"precision@{k}"] = n_hits / k
        out[f"hit@{k}"] = (n_hits > 0).to(torch.float32)
    return out
