"""GF-CF: its embeddings score as the published filter does, and selection uses validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from training.config import REPO_ROOT, load_config
from training.context import build_context
from training.data import load_dataset
from training.gfcf import GraphFilter, fit_gfcf


def _direct_scores(train: np.ndarray, rank: int, alpha: float) -> np.ndarray:
    """The filter written out densely, as in the paper: R (R~^T R~ + a D^-1/2 V V^T D^1/2)."""
    user_degree, item_degree = train.sum(axis=1), train.sum(axis=0)
    du = np.where(user_degree > 0, user_degree, np.inf) ** -0.5
    di = np.where(item_degree > 0, item_degree, np.inf) ** -0.5
    normalized = du[:, None] * train * di[None, :]
    _, _, vt = np.linalg.svd(normalized)
    basis = vt[:rank].T
    ideal = (di[:, None] * basis) @ (basis.T * np.sqrt(item_degree)[None, :])
    return train @ (normalized.T @ normalized + alpha * ideal)


def test_embedding_inner_products_are_the_filter_scores() -> None:
    rng = np.random.default_rng(0)
    train = (rng.random((30, 12)) < 0.3).astype(np.float64)
    train[:, 11] = 0.0  # an item nobody has interacted with scores 0
    graph = GraphFilter(sp.csr_matrix(train), max_rank=4)
    users, items = graph.embeddings(4, 2.5, torch.device("cpu"))

    scores = (users.double() @ items.double().T).numpy()

    np.testing.assert_allclose(scores, _direct_scores(train, 4, 2.5), atol=1e-4)
    assert np.all(scores[:, 11] == 0.0)


@pytest.fixture(scope="module")
def gfcf_summary(synthetic_dataset: Path) -> dict:
    config = load_config(
        REPO_ROOT / "configs" / "synthetic.toml",
        [f"data.path={json.dumps(str(synthetic_dataset))}", "run.device='cpu'"],
    )
    ctx = build_context(load_dataset(synthetic_dataset), config)
    return fit_gfcf(ctx, "recall@20", ranks=(8, 32), alphas=(0.3, 3.0))


def test_the_choice_is_the_best_validation_score_and_test_is_reported(gfcf_summary: dict) -> None:
    grid = gfcf_summary["grid"]
    assert set(grid) == {
        "rank=8,alpha=0",
        "rank=8,alpha=0.3",
        "rank=8,alpha=3",
        "rank=32,alpha=0.3",
        "rank=32,alpha=3",
    }
    chosen = f"rank={gfcf_summary['rank']},alpha={gfcf_summary['alpha']:g}"
    assert grid[chosen] == max(grid.values())
    assert gfcf_summary["valid"]["recall@20"] == pytest.approx(grid[chosen])
    assert {"recall@20", "ndcg@20"} <= set(gfcf_summary["test"])


def test_the_filter_ranks_held_out_items_far_above_chance(gfcf_summary: dict) -> None:
    assert gfcf_summary["test"]["recall@20"] > 3 * 20 / 200


def test_bad_grids_are_refused(synthetic_dataset: Path) -> None:
    config = load_config(
        REPO_ROOT / "configs" / "synthetic.toml",
        [f"data.path={json.dumps(str(synthetic_dataset))}", "run.device='cpu'"],
    )
    ctx = build_context(load_dataset(synthetic_dataset), config)
    with pytest.raises(ValueError, match="alphas > 0"):
        fit_gfcf(ctx, "recall@20", ranks=(8,), alphas=(0.0,))
