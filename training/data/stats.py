"""Summary statistics of a loaded dataset (the numbers its README quotes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.dataset import Dataset
from training.data.interactions import SPLITS


@dataclass(frozen=True)
class DatasetStats:
    """Counts over one dataset; ``density`` is all interactions / (users * items)."""

    name: str
    n_users: int
    n_items: int
    interactions: dict[str, int]
    users_with_any: dict[str, int]
    density: float
    users_without_train: int
    items_without_train: int
    cold_test_items: int
    cold_test_interactions: int
    modality_dims: dict[str, int]
    fingerprint: str

    @property
    def total(self) -> int:
        return sum(self.interactions.values())


def compute_stats(dataset: Dataset) -> DatasetStats:
    """Count interactions per split, users and items without training data, and
    test items (and test interactions) on items that never occur in train."""
    matrices = {"train": dataset.train, "valid": dataset.valid, "test": dataset.test}
    item_train = np.diff(dataset.train.tocsc().indptr)
    test_items = dataset.test.indices
    cold_test = item_train[test_items] == 0
    total = sum(matrix.nnz for matrix in matrices.values())
    return DatasetStats(
        name=dataset.name,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        interactions={split: int(matrices[split].nnz) for split in SPLITS},
        users_with_any={
            split: int(np.count_nonzero(np.diff(matrices[split].indptr))) for split in SPLITS
        },
        density=total / (dataset.n_users * dataset.n_items),
        users_without_train=int(np.count_nonzero(np.diff(dataset.train.indptr) == 0)),
        items_without_train=int(np.count_nonzero(item_train == 0)),
        cold_test_items=int(np.unique(test_items[cold_test]).size),
        cold_test_interactions=int(np.count_nonzero(cold_test)),
        modality_dims={name: int(m.shape[1]) for name, m in sorted(dataset.features.items())},
        fingerprint=dataset.fingerprint,
    )


def format_stats(stats: DatasetStats, fmt: str) -> str:
    """Human-readable report, numbers written as in the dataset READMEs (``9,308``)."""
    counts = " / ".join(f"{stats.interactions[split]:,}" for split in SPLITS)
    with_any = " / ".join(f"{stats.users_with_any[split]:,}" for split in SPLITS)
    modalities = ", ".join(f"{name} {dim}" for name, dim in stats.modality_dims.items())
    lines = [
        f"dataset: {stats.name} (format {fmt})",
        f"users: {stats.n_users:,}",
        f"items: {stats.n_items:,}",
        f"interactions train / valid / test: {counts} (total {stats.total:,})",
        f"density: {stats.density:.2%} ({stats.density:.6f})",
        f"users with >=1 interaction train / valid / test: {with_any}",
        f"users without training interactions: {stats.users_without_train:,}",
        f"items without training interactions: {stats.items_without_train:,}",
        f"test items never in train: {stats.cold_test_items:,} "
        f"({stats.cold_test_interactions:,} test interactions)",
        f"modalities: {modalities or 'none (ID only)'}",
        f"fingerprint: {stats.fingerprint}",
    ]
    return "\n".join(lines)
