"""Bundle users' top items over the bundle's own vectors, kept per user (LRU).

A bundle user who has posted nothing keeps the bundle's vector, and the bundle's item vectors
never change either (online changes live in the item overlay), so that user's ranking of the
non-overlaid items is a pure function of the loaded bundle. :class:`TopLists` computes it with
the same :class:`~service.index.ItemIndex` search that serves requests (training items
excluded, float64 scores, ties by the lower item index), ``depth`` items, the first time the
user is asked for, and keeps it for the ``cache_users`` most recently asked users. A request
then takes the first ``k`` entries that are not overlaid and merges them with the overlaid
items' exact scores: the same answer as a live search, and from then on without one.

Only a small bundle's lists are all computed at load (at most ``EAGER_MAX_SCORES`` user-item
scores, every user within ``cache_users``); a big one's are not, so start-up does not grow with
users x items (precomputing every list of a 1M-user, 200k-item bundle took over 300 s).
Memory: 12 bytes per entry (int32 item, float64 score) plus ~200 bytes per kept user: 26 MB for
20,000 users at depth 100. A list cannot answer a query that needs more than it holds; the
caller then searches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from service.index import MISSING_ITEM, ItemIndex, is_member

DEFAULT_CACHE_USERS = 20_000
EAGER_MAX_SCORES = 10**8
"""Largest users x items whose lists are all computed at load (when every user fits the cache):
tiktok's 9,308 x 6,710 (6.2e7 scores) take about a second, and a first request per user then
costs what a later one does; a bigger bundle computes each list on its user's first request."""
BATCH_USERS = 512
"""Users searched per index call when the lists are computed at load."""


class TopLists:
    """Top-``depth`` items of each user over ``index``, leaving out that user's own items.

    Args:
        index: the bundle's item index.
        user_vectors: (n_users, dim) float32, the bundle's user vectors.
        indptr, indices: CSR rows of the items each user must never be given (training items).
        depth: entries kept per user (>= 1).
        cache_users: most users whose lists are kept (least recently used dropped first).
    """

    def __init__(
        self,
        index: ItemIndex,
        user_vectors: np.ndarray,
        indptr: np.ndarray,
        indices: np.ndarray,
        depth: int,
        cache_users: int = DEFAULT_CACHE_USERS,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if cache_users < 1:
            raise ValueError(f"cache_users must be >= 1, got {cache_users}")
        n_users = user_vectors.shape[0]
        if indptr.shape != (n_users + 1,):
            raise ValueError(f"indptr must have {n_users + 1} entries, got {indptr.shape}")
        self.depth = min(depth, index.size)
        self.cache_users = cache_users
        self._index = index
        self._users = user_vectors
        self._indptr, self._indices = indptr, indices
        self._lists: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        if n_users <= cache_users and n_users * index.size <= EAGER_MAX_SCORES:
            self._fill(n_users)

    def _fill(self, n_users: int) -> None:
        """Compute every user's list now, ``BATCH_USERS`` per index call."""
        for start in range(0, n_users, BATCH_USERS):
            rows = range(start, min(start + BATCH_USERS, n_users))
            excludes = [
                self._indices[self._indptr[row] : self._indptr[row + 1]].astype(np.int64)
                for row in rows
            ]
            found = self._index.search(self._users[rows.start : rows.stop], self.depth, excludes)
            for position, row in enumerate(rows):
                self._lists[row] = _entry(found.items[position], found.scores[position])

    def __len__(self) -> int:
        """Number of users whose lists are kept now."""
        return len(self._lists)

    def entries(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """User ``row``'s list: items (int32, ``MISSING_ITEM``-padded) and float64 scores."""
        with self._lock:
            found = self._lists.get(row)
            if found is not None:
                self._lists.move_to_end(row)
                return found
        exclude = self._indices[self._indptr[row] : self._indptr[row + 1]].astype(np.int64)
        result = self._index.search(self._users[row : row + 1], self.depth, [exclude])
        entry = _entry(result.items[0], result.scores[0])
        with self._lock:
            self._lists[row] = entry
            if len(self._lists) > self.cache_users:
                self._lists.popitem(last=False)
        return entry

    def top(self, row: int, k: int, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """User ``row``'s best ``k`` entries that are not in ``hidden`` (sorted int64).

        Returns (scores float64, items int64), possibly fewer than ``k`` when the catalog has
        fewer items the user may get; None when the list is too short to tell.
        """
        items, scores = self.entries(row)
        keep = items != MISSING_ITEM
        complete = not keep[-1]
        if hidden.size:
            keep &= ~is_member(items, hidden)
        kept = np.flatnonzero(keep)[:k]
        if kept.size < k and not complete:
            return None
        return scores[kept], items[kept].astype(np.int64)


def _entry(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One user's kept list: its items as int32 and its scores, read-only copies."""
    kept_items, kept_scores = items.astype(np.int32), scores.copy()
    kept_items.flags.writeable = False
    kept_scores.flags.writeable = False
    return kept_items, kept_scores
