"""Cold protocols and content maps on the synthetic data, whose features carry the signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bundle.content import content_embeddings
from training.coldsplit import holdout_split, natural_split, split_targets
from training.coldstart import (
    AlignConfig,
    Candidate,
    SplitScorer,
    content_for_export,
    fit_map,
    select_map,
    with_content,
)
from training.data import Dataset, load_dataset
from training.evaluate import evaluate


def svd_student(train: sp.csr_matrix, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in for an exported student: the rank-``dim`` SVD of the training matrix."""
    u, s, vt = np.linalg.svd(train.toarray().astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:dim])
    return (u[:, :dim] * root).astype(np.float32), (vt[:dim].T * root).astype(np.float32)


@pytest.fixture
def synthetic(synthetic_dataset: Path) -> Dataset:
    return load_dataset(synthetic_dataset)


def test_holdout_split_moves_every_interaction_of_a_fifth_of_the_items(synthetic: Dataset) -> None:
    split = holdout_split(synthetic, fraction=0.2, seed=1)
    warm_before = synthetic.train.getnnz(axis=0) > 0
    held = split.cold_items & warm_before
    assert held.sum() == round(0.2 * warm_before.sum())
    train = split.dataset.train
    assert train[:, held].nnz == 0 and split.dataset.valid[:, held].nnz == 0
    every = synthetic.train + synthetic.valid + synthetic.test
    cold_valid_items = np.flatnonzero(split.valid[:, held].getnnz(axis=0) > 0)
    cold_test_items = np.flatnonzero(split.test[:, held].getnnz(axis=0) > 0)
    assert not set(cold_valid_items) & set(cold_test_items), "split by item"
    assert split.valid[:, held].nnz + split.test[:, held].nnz == every[:, held].nnz
    assert split.dataset.fingerprint != synthetic.fingerprint
    assert holdout_split(synthetic, seed=1).cold_items.tolist() == split.cold_items.tolist()


def test_split_targets_partition_the_target(synthetic: Dataset) -> None:
    split = natural_split(synthetic)
    parts = split_targets(split.test, split.cold_items)
    assert parts["warm"].nnz + parts["cold"].nnz == parts["overall"].nnz
    assert parts["cold"][:, ~split.cold_items].nnz == 0


def test_split_scorer_matches_the_offline_evaluator(synthetic: Dataset) -> None:
    split = holdout_split(synthetic, seed=0)
    users, items = svd_student(split.dataset.train)
    cold = np.flatnonzero(split.cold_items)
    fit = fit_map(
        Candidate("ridge", 10.0),
        synthetic.features,
        items,
        users,
        split.dataset.train,
        np.flatnonzero(split.warm_items),
    )
    embedded = with_content(items, fit.calibrated(1.0, 2.0), synthetic.features, cold)
    exclude = [split.dataset.train, split.valid]
    fast = SplitScorer(users, items, cold, split.test, exclude).metrics(embedded[cold])
    for part, target in split_targets(split.test, split.cold_items).items():
        slow = evaluate(
            torch.from_numpy(users), torch.from_numpy(embedded), target, exclude, ks=(20,)
        )
        assert fast[part]["recall@20"] == pytest.approx(slow["recall@20"], abs=1e-6), part
        assert fast[part]["ndcg@20"] == pytest.approx(slow["ndcg@20"], abs=1e-6), part


def test_split_scorer_breaks_ties_as_the_offline_evaluator(synthetic: Dataset) -> None:
    # 0/1 embeddings of 3 dimensions: scores are small integers, so most ranks are ties
    split = holdout_split(synthetic, seed=1)
    rng = np.random.default_rng(0)
    users = rng.integers(0, 2, (split.dataset.train.shape[0], 3)).astype(np.float32)
    items = rng.integers(0, 2, (split.dataset.train.shape[1], 3)).astype(np.float32)
    cold = np.flatnonzero(split.cold_items)
    exclude = [split.dataset.train, split.valid]
    fast = SplitScorer(users, items, cold, split.test, exclude).metrics(items[cold])
    for part, target in split_targets(split.test, split.cold_items).items():
        slow = evaluate(torch.from_numpy(users), torch.from_numpy(items), target, exclude, ks=(20,))
        assert fast[part]["recall@20"] == pytest.approx(slow["recall@20"], abs=1e-6), part
        assert fast[part]["ndcg@20"] == pytest.approx(slow["ndcg@20"], abs=1e-6), part


def test_exported_map_reproduces_the_calibrated_embeddings(synthetic: Dataset) -> None:
    split = natural_split(synthetic)
    users, items = svd_student(synthetic.train)
    warm = np.flatnonzero(split.warm_items)
    for candidate in (Candidate("knn", 5), Candidate("ridge", 1.0)):
        fit = fit_map(candidate, synthetic.features, items, users, synthetic.train, warm)
        fit = fit.calibrated(0.5, 3.0)
        rows = np.arange(10)
        exported = content_embeddings(
            fit.exported(), {m: f[rows] for m, f in synthetic.features.items()}
        )
        np.testing.assert_allclose(
            exported, fit.embed(synthetic.features, rows), rtol=1e-4, atol=1e-5
        )


def test_selection_picks_a_content_map_whose_cold_items_beat_random(synthetic: Dataset) -> None:
    # every synthetic item has training interactions: hold 5 % out (ALDI's protocol)
    split = holdout_split(synthetic, 0.05)
    users, items = svd_student(split.dataset.train)
    selection = select_map(
        users,
        items,
        synthetic.features,
        split.dataset.train,
        split.valid,
        split.cold_items,
        seed=0,
        align=AlignConfig(steps=20, items_per_step=64, users_per_step=64),
    )
    assert selection.chosen != "random"
    cold = np.flatnonzero(split.cold_items)
    exclude = [split.dataset.train, split.valid]
    target = split_targets(split.test, split.cold_items)["cold"]

    def cold_recall(method: str) -> float:
        embedded = with_content(items, selection.per_method[method], synthetic.features, cold)
        metrics = evaluate(
            torch.from_numpy(users), torch.from_numpy(embedded), target, exclude, ks=(20,)
        )
        return metrics["recall@20"]

    assert cold_recall(selection.chosen) > cold_recall("random") + 0.05


def test_export_content_map_modes(synthetic: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    split = holdout_split(synthetic, 0.05)
    train = split.dataset.train.tocsr()
    users, items = svd_student(train)
    layers = np.zeros((0, *items.shape), np.float32)

    def export(mode: str) -> object:
        return content_for_export(
            synthetic.features, users, items, layers, train, split.valid, 0, mode=mode
        )

    assert export("none") is None
    monkeypatch.setattr("training.coldstart.AUTO_SELECT_SCORES", train.shape[1] - 1)
    assert export("auto") is None
    chosen = export("select")
    assert chosen is not None
    cold = np.flatnonzero(train.getnnz(axis=0) == 0)
    assert cold.size and not np.allclose(chosen.item_embeddings[cold], items[cold])
    with pytest.raises(ValueError, match="content map mode 'some' is not one of"):
        export("some")
