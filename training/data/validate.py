"""Consistency checks shared by the loaders; each failure is a precise DataFormatError."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.data.errors import DataFormatError
from training.data.interactions import SplitPairs


def check_ids(pairs: SplitPairs, shape: tuple[int, int], bound_reason: tuple[str, str]) -> None:
    """Require 0 <= user < shape[0] and 0 <= item < shape[1] for every pair.

    ``bound_reason`` says, for users and for items, where the bound comes from.
    """
    for axis, (kind, ids) in enumerate((("user", pairs.users), ("item", pairs.items))):
        if ids.size == 0:
            continue
        low, high = int(ids.min()), int(ids.max())
        if low < 0:
            raise DataFormatError(
                f"{pairs.source}: {kind} id {low} is negative; expected ids in 0..{shape[axis] - 1}"
            )
        if high >= shape[axis]:
            raise DataFormatError(
                f"{pairs.source}: {kind} id {high} is out of range; expected ids in "
                f"0..{shape[axis] - 1} ({bound_reason[axis]})"
            )


def check_not_empty(matrix: sp.csr_matrix, split: str, source: str) -> None:
    """An empty split cannot be trained on or evaluated."""
    if matrix.nnz == 0:
        raise DataFormatError(
            f"{source}: the {split} split has no interactions; expected at least one"
        )


def check_disjoint(matrices: dict[str, sp.csr_matrix], sources: dict[str, str]) -> None:
    """No (user, item) pair may appear in two splits (it would leak the answer)."""
    names = list(matrices)
    for pos, first in enumerate(names):
        for second in names[pos + 1 :]:
            both = matrices[first].multiply(matrices[second]).tocoo()
            if both.nnz:
                user, item = int(both.row[0]), int(both.col[0])
                raise DataFormatError(
                    f"{sources[first]} and {sources[second]}: {both.nnz} (user, item) "
                    f"pair(s) appear in both the {first} and the {second} split, e.g. "
                    f"user {user}, item {item}; expected the splits to be disjoint"
                )


def check_feature_rows(features: dict[str, np.ndarray], n_items: int, reason: str) -> None:
    """Every modality needs exactly one row per item."""
    for name, matrix in sorted(features.items()):
        if matrix.shape[0] != n_items:
            raise DataFormatError(
                f"{name}_feat.npy: has {matrix.shape[0]} rows, expected {n_items} "
                f"(one per item; {reason})"
            )


def check_finite(matrix: np.ndarray, source: str) -> None:
    """Features must be finite (after the cast to float32)."""
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise DataFormatError(
            f"{source}: {int(bad.sum())} NaN or infinite value(s) in float32, the first at "
            f"row {row} (item {row}), column {col}; expected finite features"
        )
