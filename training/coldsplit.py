"""Cold-item protocols: which items are cold and which held-out interactions score them.

Two protocols (issue 13):

- ``natural``: the dataset as split; cold items are those with no training interaction.
  Their validation and test interactions are the cold targets.
- ``holdout`` (ALDI, SIGIR 2023): a seeded ``fraction`` of the items that have training
  interactions lose every interaction from training, validation and test; those items are
  split in two halves by item, and all their interactions (from any split) become the
  cold-validation targets (first half) or the cold-test targets (second half). The warm
  validation and test splits are those of the remaining items.

A :class:`ColdSplit` carries the training dataset (what the student trains on) and the
targets; :func:`split_targets` cuts any target matrix into its warm and cold parts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.data import Dataset
from training.data.fingerprint import fingerprint

__all__ = ["ColdSplit", "holdout_split", "natural_split", "split_targets"]

PROTOCOLS = ("natural", "holdout")


@dataclass(frozen=True)
class ColdSplit:
    """A dataset to train on, with cold items and the targets that score them.

    ``dataset.valid`` / ``dataset.test`` hold the warm *and* (natural protocol) cold
    targets the usual evaluation sees; ``valid`` / ``test`` here are the overall targets of
    this protocol (warm + cold), ``cold_items`` a bool mask over items.
    """

    protocol: str
    dataset: Dataset
    valid: sp.csr_matrix
    test: sp.csr_matrix
    cold_items: np.ndarray

    @property
    def warm_items(self) -> np.ndarray:
        return np.asarray(~self.cold_items)


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    result = sp.csr_matrix(matrix, dtype=np.float32)
    result.sum_duplicates()
    result.eliminate_zeros()
    result.data[:] = 1.0
    result.sort_indices()
    return result


def _columns(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """``matrix`` with the columns outside the bool mask ``keep`` zeroed."""
    return _binary(matrix @ sp.diags(keep.astype(np.float32)))


def split_targets(target: sp.csr_matrix, cold_items: np.ndarray) -> dict[str, sp.csr_matrix]:
    """``{"overall", "warm", "cold"}``: ``target`` and its warm-item and cold-item columns."""
    return {
        "overall": _binary(target),
        "warm": _columns(target, ~cold_items),
        "cold": _columns(target, cold_items),
    }


def natural_split(dataset: Dataset) -> ColdSplit:
    """The dataset as split; cold items are those without a training interaction."""
    cold = np.asarray(dataset.train.getnnz(axis=0) == 0)
    return ColdSplit("natural", dataset, dataset.valid, dataset.test, cold)


def holdout_split(dataset: Dataset, fraction: float = 0.2, seed: int = 0) -> ColdSplit:
    """ALDI's protocol: ``fraction`` of the warm items become cold (see the module doc).

    Raises ValueError unless ``0 < fraction < 1`` and at least two items are held out.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    warm = np.flatnonzero(dataset.train.getnnz(axis=0) > 0)
    n_cold = round(fraction * warm.size)
    if n_cold < 2:
        raise ValueError(
            f"fraction {fraction} of {warm.size} warm items holds out {n_cold}; need at least 2"
        )
    chosen = np.random.default_rng(seed).permutation(warm)[:n_cold]
    held = np.zeros(dataset.n_items, dtype=bool)
    held[chosen] = True
    cold_valid_items = np.zeros_like(held)
    cold_valid_items[chosen[: n_cold // 2]] = True
    cold_test_items = held & ~cold_valid_items
    every = _binary(dataset.train + dataset.valid + dataset.test)
    splits = {name: _columns(getattr(dataset, name), ~held) for name in ("train", "valid", "test")}
    for name, matrix in splits.items():
        if matrix.nnz == 0:
            raise ValueError(f"holding out {n_cold} items leaves the {name} split empty")
    trained = dataclasses.replace(
        dataset,
        name=dataset.name,
        **splits,
        fingerprint=fingerprint(splits, dataset.features, dataset.user_ids, dataset.item_ids),
    )
    valid = _binary(splits["valid"] + _columns(every, cold_valid_items))
    test = _binary(splits["test"] + _columns(every, cold_test_items))
    return ColdSplit("holdout", trained, valid, test, held)
