"""The format-neutral interaction lists every loader produces, and their CSR form."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

SPLITS = ("train", "valid", "test")


class SplitPairs(NamedTuple):
    """The (user, item) pairs of one split, as int64 arrays, and where they came from.

    ``source`` names the file (and, for a one-file format, the rows) in error messages.
    """

    users: np.ndarray
    items: np.ndarray
    source: str


class RawInteractions(NamedTuple):
    """The three splits read from a folder, before the item count is settled.

    ``shape`` is the (users, items) shape the files declare (HKUDS pickles do), or
    ``None`` when the files only list ids (JSON, MMRec).
    """

    splits: dict[str, SplitPairs]
    shape: tuple[int, int] | None


def to_csr(pairs: SplitPairs, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary float32 CSR of ``shape`` with sorted, unique indices (repeated pairs count once).

    The ids must already be checked to lie inside ``shape``.
    """
    ones = np.ones(len(pairs.users), dtype=np.float32)
    matrix = sp.csr_matrix((ones, (pairs.users, pairs.items)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    matrix.data[:] = 1.0
    return matrix
