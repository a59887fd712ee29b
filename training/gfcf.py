"""GF-CF (Shen et al., CIKM 2021): a training-free graph-filter baseline.

With R the binary training matrix, D_U and D_I its user and item degrees and
R~ = D_U^-1/2 R D_I^-1/2, a user's scores are ``r_u (R~^T R~ + alpha D_I^-1/2 V_r V_r^T
D_I^1/2)``: the normalised item-item linear filter plus ``alpha`` times the ideal
low-pass filter made of the top ``r`` right singular vectors V_r of R~ (scipy's sparse
SVD). Nothing is trained; ``r`` and ``alpha`` are chosen on validation (the configured
``eval.select_metric``) over :data:`RANKS` x :data:`ALPHAS`, and the chosen pair's test
metrics are reported once.

Scores are written as inner products of embeddings so that the project's one evaluator
ranks them: a user is ``[r_u, r_u D_I^-1/2 V_r]`` and an item ``[row i of R~^T R~,
alpha D_I^1/2 V_r[i]]``. The width is items + r, so memory is O((users + items) x
items): fine for catalogs of tens of thousands of items, not for millions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sp_linalg
import torch

from training.context import TrainingContext

logger = logging.getLogger(__name__)

RANKS = (64, 128, 256, 512)
ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


class GraphFilter:
    """The filters of one training matrix: the linear filter and the singular vectors."""

    def __init__(self, train: sp.csr_matrix, max_rank: int, seed: int = 0) -> None:
        matrix = sp.csr_matrix(train, dtype=np.float64)
        user_degree = np.asarray(matrix.sum(axis=1)).ravel()
        item_degree = np.asarray(matrix.sum(axis=0)).ravel()
        self.item_scale = _inverse_sqrt(item_degree)
        self.item_unscale = np.sqrt(item_degree)
        normalized = sp.diags(_inverse_sqrt(user_degree)) @ matrix @ sp.diags(self.item_scale)
        self.user_linear = matrix.astype(np.float32).toarray()
        self.train = matrix
        self.linear = np.asarray((normalized.T @ normalized).todense(), dtype=np.float32)
        rank = min(max_rank, min(matrix.shape) - 1)
        _, values, vt = sp_linalg.svds(
            normalized, k=rank, solver="propack", random_state=np.random.default_rng(seed)
        )
        self.vectors = vt[np.argsort(-values)].T  # (items, rank), strongest first

    @property
    def max_rank(self) -> int:
        return int(self.vectors.shape[1])

    def embeddings(
        self, rank: int, alpha: float, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) embeddings whose inner products are the filter's scores."""
        basis = self.vectors[:, :rank]
        user_low = self.train @ (self.item_scale[:, None] * basis)
        item_low = alpha * self.item_unscale[:, None] * basis
        users = np.hstack([self.user_linear, user_low.astype(np.float32)])
        items = np.hstack([self.linear, item_low.astype(np.float32)])
        return torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)


def _inverse_sqrt(degree: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(degree > 0, 1.0 / np.sqrt(degree), 0.0)


def fit_gfcf(
    ctx: TrainingContext,
    select_metric: str,
    ranks: tuple[int, ...] = RANKS,
    alphas: tuple[float, ...] = ALPHAS,
) -> dict[str, Any]:
    """Choose (rank, alpha) on validation; return a stage-like summary.

    The summary has ``valid`` and ``test`` metrics of the chosen filter, ``rank`` and
    ``alpha`` (``alpha`` 0: the linear filter alone, chosen when it validates best),
    the validation score of every candidate under ``grid``, and ``seconds``.
    """
    if not ranks or min(ranks) < 1 or not alphas or min(alphas) <= 0:
        raise ValueError(f"GF-CF needs ranks >= 1 and alphas > 0, got {ranks} and {alphas}")
    started = time.perf_counter()
    graph = GraphFilter(ctx.dataset.train, max(ranks), seed=0)
    usable = sorted({min(rank, graph.max_rank) for rank in ranks})
    candidates = [(usable[0], 0.0)] + [(rank, alpha) for rank in usable for alpha in alphas]
    scores: dict[tuple[int, float], float] = {}
    for rank, alpha in candidates:
        scores[rank, alpha] = ctx.validate(*graph.embeddings(rank, alpha, ctx.device))[
            select_metric
        ]
        logger.info(
            "GF-CF rank %d alpha %g: valid %s %.4f", rank, alpha, select_metric, scores[rank, alpha]
        )
    rank, alpha = max(scores, key=scores.__getitem__)
    users, items = graph.embeddings(rank, alpha, ctx.device)
    summary = {
        "rank": rank,
        "alpha": alpha,
        "valid": ctx.validate(users, items),
        "test": ctx.test(users, items),
        "grid": {f"rank={r},alpha={a:g}": score for (r, a), score in scores.items()},
        "seconds": time.perf_counter() - started,
    }
    logger.info(
        "GF-CF chosen on validation: rank %d alpha %g; test %s", rank, alpha, summary["test"]
    )
    return summary
