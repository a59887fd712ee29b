"""A seeded synthetic multi-modal dataset in the MMRec layout, for tests and smoke runs.

Users and items get latent factors; each user's interactions are drawn without
replacement from a softmax over latent affinity plus item popularity. Each modality is
the item factors times a random projection plus noise, so content carries the signal
and an item without training interactions can still be ranked from its features.
Each user's items get random timestamps; as in ``ml100k-mm`` the last
k = max(1, round(0.1 n)) become test, the k before them valid, the rest train, so
every user (each has >= 3 interactions) has train, valid and test items.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from training.data.features import FEATURE_SUFFIX

DEFAULT_MODALITIES: Mapping[str, int] = MappingProxyType({"image": 32, "text": 16})
LATENT_DIM = 8
MIN_PER_USER = 3
FEATURE_NOISE = 0.3
AFFINITY_SCALE = 2.0
POPULARITY_SCALE = 0.5
TIME_START = 1_700_000_000
HEADER = "userID\titemID\ttimestamp\tx_label"


def write_synthetic(
    out_dir: Path,
    *,
    n_users: int = 300,
    n_items: int = 200,
    seed: int = 0,
    modalities: Mapping[str, int] = DEFAULT_MODALITIES,
    density: float = 0.05,
) -> Path:
    """Write ``<out_dir.name>.inter`` and ``<modality>_feat.npy`` files into ``out_dir``.

    ``density`` is the expected share of (user, item) pairs that interact (each user
    has at least 3). The same arguments always write the same bytes. With no modalities
    the loader counts items up to the largest item id drawn, which may be fewer than
    ``n_items``. Returns ``out_dir``.
    """
    _check_args(n_users, n_items, modalities, density)
    rng = np.random.default_rng(seed)
    user_factors = rng.normal(size=(n_users, LATENT_DIM))
    item_factors = rng.normal(size=(n_items, LATENT_DIM))
    popularity = rng.normal(scale=POPULARITY_SCALE, size=n_items)
    affinity = AFFINITY_SCALE * user_factors @ item_factors.T / np.sqrt(LATENT_DIM) + popularity
    counts = np.clip(rng.poisson(density * n_items, size=n_users), MIN_PER_USER, n_items)
    # Gumbel top-k: sample without replacement proportionally to exp(affinity).
    chosen = np.argsort(-(affinity + rng.gumbel(size=affinity.shape)), axis=1)
    # The first counts[u] picks of each user, put in a random (time) order.
    width = int(counts.max())
    position = np.broadcast_to(np.arange(width), (n_users, width))
    present = position < counts[:, None]
    time_keys = np.where(present, rng.random((n_users, width)), np.inf)
    timeline = np.take_along_axis(chosen[:, :width], np.argsort(time_keys, axis=1), axis=1)
    holdout = np.maximum(1, np.floor(0.1 * counts + 0.5)).astype(np.int64)[:, None]
    from_end = counts[:, None] - position
    labels = np.where(from_end <= holdout, 2, np.where(from_end <= 2 * holdout, 1, 0))
    users = np.broadcast_to(np.arange(n_users)[:, None], (n_users, width))
    columns = (users, timeline, TIME_START + position, labels)
    rows = np.stack([column[present] for column in columns], axis=1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [HEADER, *("\t".join(map(str, row)) for row in rows.tolist())]
    _atomic_write(out / f"{out.resolve().name}.inter", ("\n".join(lines) + "\n").encode())
    for name, dim in modalities.items():
        projection = rng.normal(size=(LATENT_DIM, dim)) / np.sqrt(LATENT_DIM)
        noise = rng.normal(scale=FEATURE_NOISE, size=(n_items, dim))
        matrix = (item_factors @ projection + noise).astype(np.float32)
        _atomic_save(out / f"{name}{FEATURE_SUFFIX}", matrix)
    return out


def _check_args(n_users: int, n_items: int, modalities: Mapping[str, int], density: float) -> None:
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if n_items < MIN_PER_USER:
        raise ValueError(
            f"n_items must be >= {MIN_PER_USER} (each user gets 3 items), got {n_items}"
        )
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    for name, dim in modalities.items():
        if not name or "/" in name or os.sep in name or dim < 1:
            raise ValueError(
                f"modality {name!r}: {dim}; expected a plain non-empty name and a dim >= 1"
            )


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _atomic_save(path: Path, matrix: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        np.save(handle, matrix, allow_pickle=False)
    os.replace(tmp, path)
