"""Item vectors re-propagated with the interactions posted online (the item side of the fold-in).

When users interact with an item online, the student would give that item new neighbours. The
overlay recomputes, for every item that got online interactions, the final LightGCN embedding
the student computes over the enlarged graph (training edges + online edges), holding the egos
fixed:

    final_i = 1/(L+1) * (e_i^(0) + sum_{l=1..L} i^(l)),
    i^(l)   = sum_{u in N'(i)} u^(l-1) / sqrt(d'_u d'_i),
    u^(0)   = the user's ego (the mean ego for a user the bundle does not know),
    u^(l)   = sum_{j in N'(u)} e_j^(l-1) / sqrt(d'_u d'_j)   (l = 1..L-1),

where ``N'`` and the degrees ``d'`` count training and online edges, and ``e_j^(l)`` are the
bundle's item layers. For L <= 2 this is exact (it only needs item egos); for deeper students
the users' higher layers use the bundle's item layers. Every replica applies the same append-
ordered log (:meth:`service.store.base.Store.events_since`), so every replica computes the same
vectors. The FAISS index is never modified: the recommender searches it without the overlaid
items and scores those exactly (:func:`merge_top_k`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from bundle import Bundle, propagate_to_users

UserKey = int | str
"""A bundle user's row, or the external id of a user the bundle does not know."""


class OverlaySnapshot(NamedTuple):
    """The overlaid items (sorted), their vectors, and the step at which each last changed."""

    items: np.ndarray
    vectors: np.ndarray
    changed: np.ndarray
    step: int


def _item_users(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """CSC view of the training matrix: users of item ``i`` are ``users[ptr[i]:ptr[i+1]]``."""
    owners = np.repeat(np.arange(bundle.n_users), np.diff(bundle.train_indptr))
    order = np.argsort(bundle.train_indices, kind="stable")
    counts = np.bincount(bundle.train_indices, minlength=bundle.n_items)
    pointer = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return pointer, owners[order].astype(np.int64)


class ItemOverlay:
    """Online neighbours of items and users, and the re-propagated vectors of touched items.

    Thread-safe: :meth:`apply` serialises writers; :attr:`snapshot` is replaced, never
    mutated, so a reader always sees one consistent :class:`OverlaySnapshot`. Each
    :meth:`apply` that changes something is one step; ``snapshot.changed`` says at which step
    each item last changed, so a reader can tell what changed since a step it has indexed.
    """

    def __init__(self, bundle: Bundle) -> None:
        if bundle.user_ego is None or bundle.item_layers is None:
            raise ValueError(f"bundle {bundle.model_version} has no LightGCN layers to fold in")
        self._bundle = bundle
        self._ego = bundle.user_ego
        self._mean_ego = bundle.user_ego.mean(axis=0)
        self._layers = bundle.item_layers
        self._user_index = {user: row for row, user in enumerate(bundle.user_ids)}
        self._item_index = {item: col for col, item in enumerate(bundle.item_ids)}
        self._item_ptr, self._item_train_users = _item_users(bundle)
        self._train_degrees = bundle.item_popularity()
        self._degrees = self._train_degrees.copy()
        self._user_layers = _train_user_layers(bundle)
        self._online_users: dict[int, set[UserKey]] = {}
        self._online_items: dict[UserKey, set[int]] = {}
        self._vectors: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._changed: dict[int, int] = {}
        self.snapshot = OverlaySnapshot(
            np.empty(0, dtype=np.int64),
            np.empty((0, bundle.dim), dtype=np.float32),
            np.empty(0, dtype=np.int64),
            0,
        )

    def apply(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Add online ``(user_id, item_id)`` pairs, in log order; return the new edges.

        Each new edge re-propagates its item and the user's other online items (whose weight
        for this user changed with the user's degree), one edge at a time, so the vectors depend
        only on the log's order, not on how it was batched: replicas that applied the same log
        hold the same vectors. Pairs naming an item outside this bundle's catalog, training
        edges and repeated pairs add nothing.
        """
        with self._lock:
            added = 0
            step = self.snapshot.step + 1
            for user_id, item_id in pairs:
                item = self._item_index.get(item_id)
                if item is None:
                    continue
                row = self._user_index.get(user_id)
                key: UserKey = user_id if row is None else row
                if key in self._online_users.get(item, ()) or (
                    row is not None and item in self._train_items(row)
                ):
                    continue
                self._online_users.setdefault(item, set()).add(key)
                self._online_items.setdefault(key, set()).add(item)
                self._degrees[item] += 1
                for moved in sorted(self._online_items[key]):
                    self._vectors[moved] = self._propagate_item(moved)
                    self._changed[moved] = step
                added += 1
            if added:
                order = sorted(self._vectors)
                vectors = np.stack([self._vectors[item] for item in order]).astype(np.float32)
                vectors.flags.writeable = False
                changed = np.asarray([self._changed[item] for item in order], dtype=np.int64)
                self.snapshot = OverlaySnapshot(
                    np.asarray(order, dtype=np.int64), vectors, changed, step
                )
            return added

    def _train_items(self, row: int) -> np.ndarray:
        indptr = self._bundle.train_indptr
        return self._bundle.train_indices[indptr[row] : indptr[row + 1]]

    def _propagate_item(self, item: int) -> np.ndarray:
        """The item's final embedding over the enlarged graph (float64, see the module).

        A neighbour's layer starts from its training-graph layer (precomputed) and is then
        corrected for the items whose degree changed and for the user's online items, so the
        cost is one gather of the neighbours' item ids plus work on the changed entries only.
        """
        train_users = self._item_train_users[self._item_ptr[item] : self._item_ptr[item + 1]]
        online = sorted(self._online_users.get(item, set()), key=lambda key: (str(type(key)), key))
        rows = np.concatenate(
            [train_users, np.asarray([k for k in online if isinstance(k, int)], dtype=np.int64)]
        )
        strangers = [key for key in online if isinstance(key, str)]
        n_users = rows.size + len(strangers)
        flat, owners = self._gather_train_items(rows)
        changed = self._degrees[flat] != self._train_degrees[flat]
        flat, owners = flat[changed], owners[changed]
        corrections = 1.0 / np.sqrt(self._degrees[flat]) - 1.0 / np.sqrt(
            np.maximum(self._train_degrees[flat], 1)
        )
        extra_items: list[int] = []
        extra_owners: list[int] = []
        for position, key in enumerate([*rows.tolist(), *strangers]):
            mine = sorted(self._online_items.get(key, ()))
            extra_items += mine
            extra_owners += [position] * len(mine)
        extra = np.asarray(extra_items, dtype=np.int64)
        flat = np.concatenate([flat, extra])
        owners = np.concatenate([owners, np.asarray(extra_owners, dtype=np.int64)])
        weights = np.concatenate([corrections, 1.0 / np.sqrt(self._degrees[extra])])
        train_deg = np.concatenate(
            [np.diff(self._bundle.train_indptr)[rows], np.zeros(len(strangers), dtype=np.int64)]
        )
        degrees = np.maximum(train_deg + np.bincount(extra_owners, minlength=n_users), 1)
        order = np.argsort(owners, kind="stable")
        flat, owners, weights = flat[order], owners[order], weights[order]
        present, starts = np.unique(owners, return_index=True)
        n_layers = self._layers.shape[0]
        user_layer = np.concatenate(
            [self._ego[rows], np.tile(self._mean_ego, (len(strangers), 1))]
        ).astype(np.float64)
        item_weights = 1.0 / np.sqrt(degrees * max(n_users, 1))
        total = self._layers[0, item].astype(np.float64)
        for layer in range(1, n_layers + 1):
            total = total + item_weights @ user_layer
            if layer < n_layers:
                sums = np.zeros((n_users, self._layers.shape[2]))
                sums[: rows.size] = (
                    self._user_layers[layer - 1][rows]
                    * np.sqrt(np.maximum(train_deg[: rows.size], 1))[:, None]
                )
                if present.size:
                    weighted = self._layers[layer - 1, flat].astype(np.float64) * weights[:, None]
                    sums[present] += np.add.reduceat(weighted, starts, axis=0)
                user_layer = sums / np.sqrt(degrees)[:, None]
        return np.asarray(total / (n_layers + 1))

    def _gather_train_items(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The training items of ``rows``, flattened, with the position of their row."""
        indptr = self._bundle.train_indptr
        starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        flat = self._bundle.train_indices[offsets + np.arange(lengths.sum())].astype(np.int64)
        return flat, np.repeat(np.arange(rows.size), lengths)


def _train_user_layers(bundle: Bundle) -> list[np.ndarray]:
    """Users' LightGCN layers ``1..L-1`` on the training graph, float64 (U, d) each."""
    assert bundle.item_layers is not None
    degrees = bundle.item_popularity()
    return [
        propagate_to_users(bundle.train_indptr, bundle.train_indices, layer, degrees)
        for layer in bundle.item_layers[:-1]
    ]


def merge_top_k(
    found_scores: np.ndarray,
    found_items: np.ndarray,
    extra_scores: np.ndarray,
    extra_items: np.ndarray,
    k: int,
    missing: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` of the index's candidates and the ``extra`` scored items together.

    Ordered by descending score, ties by the lower item index (as the index and the offline
    evaluator order); rows shorter than ``k`` are padded with ``missing`` / ``-inf``.
    """
    valid = found_items != missing
    items = np.concatenate([found_items[valid], extra_items.astype(np.int64)])
    scores = np.concatenate([found_scores[valid], extra_scores.astype(np.float64)])
    order = np.lexsort((items, -scores))[:k]
    out_scores = np.full(k, -np.inf)
    out_items = np.full(k, missing, dtype=np.int64)
    out_scores[: len(order)] = scores[order]
    out_items[: len(order)] = items[order]
    return out_scores, out_items
