"""Small random but valid bundles for fast service tests (no torch, no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bundle import Bundle, write_bundle


def random_bundle(
    n_users: int = 50,
    n_items: int = 80,
    dim: int = 16,
    *,
    seed: int = 0,
    version: str = "test-v1",
    items_per_user: tuple[int, int] = (2, 8),
) -> Bundle:
    """A bundle with Gaussian embeddings and 2-7 random training items per user.

    User ids are ``"0"``..``"n_users-1"`` (so a JSON integer id names them too), item ids
    ``"i0"``..; the last item is never a training item, so its popularity is zero.
    """
    rng = np.random.default_rng(seed)
    counts = rng.integers(items_per_user[0], items_per_user[1], size=n_users)
    rows = [np.sort(rng.choice(n_items - 1, size=count, replace=False)) for count in counts]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Bundle(
        user_embeddings=rng.standard_normal((n_users, dim)).astype(np.float32),
        item_embeddings=rng.standard_normal((n_items, dim)).astype(np.float32),
        train_indptr=indptr,
        train_indices=np.concatenate(rows).astype(np.int32),
        user_ids=[str(user) for user in range(n_users)],
        item_ids=[f"i{item}" for item in range(n_items)],
        model_version=version,
        dataset="random",
        data_fingerprint=f"sha256:random-{seed}",
    )


def write_random_bundle(root: Path, **kwargs: Any) -> Path:
    """Write :func:`random_bundle` (``kwargs`` passed on) under models root ``root``.

    ``root/LATEST`` names it, so ``root`` itself is a valid ``bundle_path``; returns the
    version directory.
    """
    return write_bundle(random_bundle(**kwargs), root)
