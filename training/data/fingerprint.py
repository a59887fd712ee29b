"""A content fingerprint of a loaded dataset, independent of its file format."""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp


def fingerprint(
    splits: dict[str, sp.csr_matrix],
    features: dict[str, np.ndarray],
    user_ids: list[str],
    item_ids: list[str],
) -> str:
    """``"sha256:<hex>"`` over the shape, each split's CSR arrays, the ids and the features.

    Splits are hashed in the order given; features by sorted modality name. Arrays are
    hashed in fixed little-endian dtypes (int64 indices, float32 values), so the same
    content read from any format (or any on-disk dtype) gives the same fingerprint.
    """
    digest = hashlib.sha256()

    def add(tag: str, array: np.ndarray) -> None:
        digest.update(f"{tag}:{array.shape}\n".encode())
        digest.update(np.ascontiguousarray(array).tobytes())

    for name, matrix in splits.items():
        digest.update(f"split {name} {matrix.shape}\n".encode())
        add("indptr", matrix.indptr.astype("<i8"))
        add("indices", matrix.indices.astype("<i8"))
        add("data", matrix.data.astype("<f4"))
    for kind, ids in (("users", user_ids), ("items", item_ids)):
        digest.update(f"{kind} {len(ids)}\n".encode())
        digest.update("\n".join(ids).encode())
    for name in sorted(features):
        add(f"feature {name}", features[name].astype("<f4"))
    return f"sha256:{digest.hexdigest()}"
