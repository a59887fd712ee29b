"""HKUDS MMSSL/DiffMM layout: ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl``.

Each file is a pickled (users, items) scipy sparse matrix; a stored non-zero entry is
an interaction. The three shapes must agree and give the user and item counts. The
files are read with the restricted unpickler of :mod:`training.data.unpickle`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from training.data.errors import DataFormatError
from training.data.interactions import RawInteractions, SplitPairs
from training.data.unpickle import load_sparse_pickle

FILES = {"train": "trnMat.pkl", "valid": "valMat.pkl", "test": "tstMat.pkl"}


def read_hkuds(folder: Path) -> RawInteractions:
    """Read the three pickled split matrices of ``folder``."""
    splits: dict[str, SplitPairs] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for split, name in FILES.items():
        path = folder / name
        if not path.is_file():
            raise DataFormatError(f"{name}: missing from {folder}; the HKUDS format needs {_all()}")
        matrix = load_sparse_pickle(path)
        shapes[name] = (int(matrix.shape[0]), int(matrix.shape[1]))
        splits[split] = _pairs(matrix, name)
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise DataFormatError(
            f"split files disagree on the (users, items) shape: {listed}; expected one shape"
        )
    return RawInteractions(splits=splits, shape=shapes[FILES["train"]])


def _pairs(matrix: sp.spmatrix, name: str) -> SplitPairs:
    coo = matrix if matrix.format == "coo" else _to_coo(matrix, name)
    row, col, data = (np.asarray(getattr(coo, key)) for key in ("row", "col", "data"))
    if row.dtype.kind not in "iu" or col.dtype.kind not in "iu":
        raise DataFormatError(
            f"{name}: row/col indices are {row.dtype}/{col.dtype}; expected integers"
        )
    if not (row.shape == col.shape == data.shape and row.ndim == 1):
        raise DataFormatError(
            f"{name}: row, col and data have lengths {row.shape}, {col.shape}, {data.shape}; "
            "expected three 1-D arrays of one length"
        )
    keep = data != 0
    return SplitPairs(
        users=row[keep].astype(np.int64), items=col[keep].astype(np.int64), source=name
    )


def _to_coo(matrix: sp.spmatrix, name: str) -> sp.coo_matrix:
    try:
        matrix.check_format(full_check=True)
    except ValueError as exc:
        raise DataFormatError(f"{name}: malformed {matrix.format} matrix ({exc})") from exc
    return matrix.tocoo()


def _all() -> str:
    return ", ".join(FILES.values())
