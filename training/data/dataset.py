"""The in-memory dataset every loader produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Dataset:
    """Train/valid/test interactions over one (n_users, n_items) shape, plus item features.

    ``train``/``valid``/``test`` are binary float32 CSR matrices with sorted, unique
    indices. ``features`` maps a modality name (``image``, ``audio``, ``text``, ...) to a
    float32 array of shape (n_items, d_m); it is empty for an ID-only dataset.
    ``user_ids``/``item_ids`` are the external ids (strings) by internal index.
    ``fingerprint`` is ``"sha256:<hex>"`` over the loaded content.
    """

    name: str
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    features: dict[str, np.ndarray]
    user_ids: list[str]
    item_ids: list[str]
    fingerprint: str

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])
