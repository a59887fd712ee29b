"""A seeded synthetic multi-modal dataset in the MMRec layout, at any scale.

Items fall into clusters (about sqrt(items) of them, at most 256) and have Zipf popularity (a
random rank order). Each user likes one home cluster and one side cluster; each of a
user's interactions comes from the home cluster (share :data:`HOME_SHARE`), the side
cluster (:data:`SIDE_SHARE`) or the whole catalog (the rest), always in proportion to
popularity, without repeats. Each modality is the item's latent vector (its cluster's
centre plus its own offset) times a random projection plus noise, so content carries
the signal and an item without training interactions can still be ranked from its
features.

Memory and time grow with the number of pairs, never with users x items: draws are made
in rounds for the users still short of items (a user who wants more than a quarter of
the catalog draws from all items at once, which costs O(its pairs) as well).

Each user's items come in a random (time) order; as in ``ml100k-mm`` the last
k = max(1, round(0.1 n)) become test, the k before them valid, the rest train, so every
user (each has >= 3 interactions) has train, valid and test items.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from training.data.features import FEATURE_SUFFIX

DEFAULT_MODALITIES: Mapping[str, int] = MappingProxyType({"image": 32, "text": 16})
LATENT_DIM = 8
MIN_PER_USER = 3
HOME_SHARE = 0.7
SIDE_SHARE = 0.15
ZIPF_EXPONENT = 0.6
ITEM_SPREAD = 0.5
FEATURE_NOISE = 0.3
MAX_ROUNDS = 30
DENSE_SHARE = 0.25
DENSE_CHUNK = 1 << 22
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
    n_clusters = int(np.clip(round(np.sqrt(n_items)), 2, 256))
    catalog = _Catalog(rng, n_items, n_clusters)
    home = rng.integers(n_clusters, size=n_users)
    side = (home + rng.integers(1, n_clusters, size=n_users)) % n_clusters
    counts = np.clip(rng.poisson(density * n_items, size=n_users), MIN_PER_USER, n_items)
    users, items = _draw_pairs(rng, catalog, home, side, counts)
    labels, position = _split_labels(users, counts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_inter(out / f"{out.resolve().name}.inter", users, items, TIME_START + position, labels)
    latent = catalog.centres[catalog.cluster] + rng.normal(
        scale=ITEM_SPREAD, size=(n_items, LATENT_DIM)
    )
    for name, dim in modalities.items():
        projection = rng.normal(size=(LATENT_DIM, dim)) / np.sqrt(LATENT_DIM)
        noise = rng.normal(scale=FEATURE_NOISE, size=(n_items, dim))
        matrix = (latent @ projection + noise).astype(np.float32)
        _atomic_save(out / f"{name}{FEATURE_SUFFIX}", matrix)
    return out


class _Catalog:
    """Items' clusters and popularity, and sampling from them in proportion to popularity."""

    def __init__(self, rng: np.random.Generator, n_items: int, n_clusters: int) -> None:
        self.n_items = n_items
        self.centres = rng.normal(size=(n_clusters, LATENT_DIM))
        self.cluster = rng.integers(n_clusters, size=n_items)
        rank = rng.permutation(n_items) + 1
        self.popularity = rank.astype(np.float64) ** -ZIPF_EXPONENT
        self.order = np.argsort(self.cluster, kind="stable")
        self.cumulative = np.cumsum(self.popularity[self.order])
        sizes = np.bincount(self.cluster, minlength=n_clusters)
        ends = np.cumsum(sizes)
        mass = np.concatenate([[0.0], self.cumulative])
        self.start = mass[ends - sizes]
        self.total = mass[ends] - self.start

    def draw(self, rng: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
        """One item per entry: from that cluster, or from every item where it is -1."""
        uniform = rng.random(clusters.size)
        whole = clusters < 0
        known = np.where(whole, 0, clusters)
        start = np.where(whole, 0.0, self.start[known])
        total = np.where(whole, self.cumulative[-1], self.total[known])
        slot = np.searchsorted(self.cumulative, start + uniform * total, side="right")
        items: np.ndarray = self.order[np.minimum(slot, self.n_items - 1)]
        return items


def _draw_pairs(
    rng: np.random.Generator,
    catalog: _Catalog,
    home: np.ndarray,
    side: np.ndarray,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """counts[u] distinct items per user u, as (users, items) grouped by user, each
    user's items in a random (time) order."""
    n_items = catalog.n_items
    dense = counts > DENSE_SHARE * n_items
    keys = np.empty(0, dtype=np.int64)
    draws = np.empty(0, dtype=np.int64)
    have = np.zeros(counts.size, dtype=np.int64)
    for _ in range(MAX_ROUNDS):
        short = np.flatnonzero(~dense & (have < counts))
        if short.size == 0:
            break
        users = np.repeat(short, 2 * (counts[short] - have[short]) + 2)
        choice = rng.random(users.size)
        clusters = np.where(
            choice < HOME_SHARE,
            home[users],
            np.where(choice < HOME_SHARE + SIDE_SHARE, side[users], -1),
        )
        draws = np.concatenate([draws, draws.size + np.arange(users.size)])
        keys = np.concatenate([keys, users * n_items + catalog.draw(rng, clusters)])
        keys, draws = _first_draws(keys, draws, counts, n_items)
        have = np.bincount(keys // n_items, minlength=counts.size)
    dense |= have < counts
    keys = keys[~dense[keys // n_items]]
    if dense.any():
        keys = np.concatenate([keys, _dense_draws(rng, catalog, np.flatnonzero(dense), counts)])
    order = np.lexsort((rng.random(keys.size), keys // n_items))
    return keys[order] // n_items, keys[order] % n_items


def _first_draws(
    keys: np.ndarray, draws: np.ndarray, counts: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct (user, item) key once (its first draw), at most counts[u] per user."""
    unique, first = np.unique(keys, return_index=True)
    draws = draws[first]
    users = unique // n_items
    order = np.lexsort((draws, users))
    unique, draws, users = unique[order], draws[order], users[order]
    starts = np.searchsorted(users, users, side="left")
    keep = np.arange(users.size) - starts < counts[users]
    return unique[keep], draws[keep]


def _dense_draws(
    rng: np.random.Generator, catalog: _Catalog, users: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Keys user * n_items + item of counts[u] distinct items for each of ``users`` (each
    wanting a large share of the catalog), by Gumbel top-k over popularity: O(their pairs)."""
    n_items = catalog.n_items
    log_weight = np.log(catalog.popularity)
    rows = max(1, DENSE_CHUNK // n_items)
    out = []
    for begin in range(0, users.size, rows):
        chunk = users[begin : begin + rows]
        noisy = log_weight + rng.gumbel(size=(chunk.size, n_items))
        ranked = np.argsort(-noisy, axis=1)
        for row, user in enumerate(chunk):
            out.append(user * n_items + ranked[row, : counts[user]])
    return np.concatenate(out)


def _split_labels(users: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x_label and the position in time of each pair (pairs grouped by user, in time order)."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(users.size) - starts[users]
    holdout = np.maximum(1, np.floor(0.1 * counts + 0.5)).astype(np.int64)[users]
    from_end = counts[users] - position
    labels = np.where(from_end <= holdout, 2, np.where(from_end <= 2 * holdout, 1, 0))
    return labels, position


def _write_inter(
    path: Path, users: np.ndarray, items: np.ndarray, times: np.ndarray, labels: np.ndarray
) -> None:
    table = pa.table(
        {
            name: pa.array(column, type=pa.int64())
            for name, column in zip(HEADER.split("\t"), (users, items, times, labels), strict=True)
        }
    )
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write((HEADER + "\n").encode())
        options = pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
        pa_csv.write_csv(table, handle, write_options=options)
    os.replace(tmp, path)


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


def _atomic_save(path: Path, matrix: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        np.save(handle, matrix, allow_pickle=False)
    os.replace(tmp, path)
