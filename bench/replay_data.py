"""Data for the Table 7 replay: the merged train+valid dataset and test metrics of a bundle."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from training.data import Dataset
from training.evaluate import evaluate

HKUDS_FILES = {"train": "trnMat.pkl", "valid": "valMat.pkl", "test": "tstMat.pkl"}


def _write_pickle(matrix: sp.csr_matrix, path: Path) -> None:
    with path.open("wb") as handle:
        pickle.dump(sp.coo_matrix(matrix, dtype=np.float64), handle, protocol=4)


def write_merged(dataset: Dataset, source: Path, out: Path, holdout: int, seed: int) -> Path:
    """Write ``dataset`` as an HKUDS folder whose train split is train + validation.

    The loader needs a non-empty validation split disjoint from train, so ``holdout``
    validation interactions (drawn with ``seed``) stay out of train and form the new
    validation split used for early stopping; every other validation interaction joins train.
    The test split is unchanged; item features are symbolic links to ``source``'s files.
    """
    valid = dataset.valid.tocoo()
    if not 0 < holdout < valid.nnz:
        raise ValueError(f"holdout must be in [1, {valid.nnz - 1}] interactions, got {holdout}")
    keep = np.zeros(valid.nnz, dtype=bool)
    keep[np.random.default_rng(seed).choice(valid.nnz, size=holdout, replace=False)] = True
    shape = dataset.valid.shape

    def part(mask: np.ndarray) -> sp.csr_matrix:
        data = np.ones(int(mask.sum()), dtype=np.float32)
        return sp.csr_matrix((data, (valid.row[mask], valid.col[mask])), shape=shape)

    splits = {"train": dataset.train + part(~keep), "valid": part(keep), "test": dataset.test}
    _write_splits(out, source, splits)
    return out


def holdout_pairs(dataset: Dataset, seed: int) -> list[tuple[int, int]]:
    """One training item (drawn with ``seed``) of each test or validation user with >= 2.

    The test users' pairs measure the online update on the test split; the validation users'
    pairs (disjoint users on tiktok) let ``bench.finetune_select`` choose the update method
    without reading the test split.
    """
    train = dataset.train.tocsr()
    rng = np.random.default_rng(seed)
    removed = []
    users = np.union1d(dataset.test.tocoo().row, dataset.valid.tocoo().row)
    for user in users:
        items = train.indices[train.indptr[user] : train.indptr[user + 1]]
        if items.size >= 2:
            removed.append((int(user), int(rng.choice(items))))
    return removed


def write_holdout(dataset: Dataset, source: Path, out: Path, seed: int) -> Path:
    """Write ``dataset`` as an HKUDS folder without the :func:`holdout_pairs` in train.

    Validation and test are unchanged; item features are symbolic links to ``source``'s.
    """
    removed = holdout_pairs(dataset, seed)
    rows, cols = (np.array(axis, dtype=np.int64) for axis in zip(*removed, strict=True))
    ones = np.ones(len(removed), dtype=np.float32)
    drop = sp.csr_matrix((ones, (rows, cols)), shape=dataset.train.shape)
    kept = (dataset.train - drop).tocsr()
    kept.eliminate_zeros()
    _write_splits(out, source, {"train": kept, "valid": dataset.valid, "test": dataset.test})
    return out


def _write_splits(out: Path, source: Path, splits: dict[str, sp.csr_matrix]) -> None:
    out.mkdir(parents=True, exist_ok=False)
    for split, matrix in splits.items():
        _write_pickle(matrix, out / HKUDS_FILES[split])
    for feature in sorted(source.glob("*_feat.npy")):
        (out / feature.name).symlink_to(feature.resolve())


def metrics_on_test(
    user_emb: np.ndarray, item_emb: np.ndarray, dataset: Dataset
) -> dict[str, float]:
    """Test Recall@20 / NDCG@20, training and validation items masked."""
    metrics = evaluate(
        torch.tensor(np.asarray(user_emb, dtype=np.float32)),
        torch.tensor(np.asarray(item_emb, dtype=np.float32)),
        dataset.test,
        [dataset.train, dataset.valid],
        ks=(20,),
    )
    return {key: float(metrics[key]) for key in ("recall@20", "ndcg@20", "users")}


def validation_pairs(dataset: Dataset) -> list[tuple[int, int]]:
    """Every validation interaction as a (user, item) index pair, by user."""
    valid = dataset.valid.tocoo()
    order = np.lexsort((valid.col, valid.row))
    return [(int(valid.row[i]), int(valid.col[i])) for i in order]


def external(dataset: Dataset, pairs: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """Index pairs as (external user id, external item id) pairs."""
    return [(dataset.user_ids[user], dataset.item_ids[item]) for user, item in pairs]
