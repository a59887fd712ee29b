"""The served model: one loaded bundle, its item index, popularity, and the store.

A :class:`Recommender` is immutable after construction apart from what it writes to the
store: item embeddings and the index are read-only, and a reload builds a new Recommender
and swaps one reference (see ``service.main``), so in-flight requests finish on the old one.

How a user's vector reflects the interactions posted through ``/interactions`` depends on
the update method (``PROMPTMM_FINETUNE_METHOD``, see :mod:`service.finetune`):

- ``propagate`` (the default when the bundle carries the student's LightGCN layers) and
  ``mean`` are pure functions of the bundle and the user's items (training + stored). The
  vector is folded in from the durable interaction log whenever the user is served (tens of
  microseconds), never stored: an interaction costs one durable write, a recommendation one
  read, and every replica serves the same vector because they share the log.
- ``bpr`` continues from the user's previous vector, so its result is stored per model version
  right after the interaction is; a user with stored interactions but no vector for this
  version (after a reload) is re-folded on first use.

A user with no usable stored interaction gets the bundle's vector, an unknown one none (the
popularity fallback or 404).

Items move too when the bundle has layers (``PROMPTMM_FOLD_ITEMS``): every request first applies
the interactions appended since the last one (:meth:`~service.store.base.Store.events_since`) to
an :class:`~service.overlay.ItemOverlay`, whose re-propagated items are scored exactly beside the
index until they are rebuilt into a new one (the bundle's index itself is never modified).

The log revision read by :meth:`Recommender.refresh` also tags :attr:`Recommender.responses`, the
cache of rendered answers (:mod:`service.response_cache`).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bundle import Bundle, fold_in_user, frozen, read_bundle
from service.config import Settings
from service.errors import UnknownItemsError, UnknownUserError
from service.finetune import (
    FinetuneMethod,
    finetune_user,
    mean_fold_in,
    mean_square,
    resolve_method,
)
from service.index import MISSING_ITEM, ItemIndex, build_index, is_member
from service.index_files import load_index
from service.overlay import ItemOverlay, OverlaySnapshot, merge_top_k
from service.response_cache import ResponseCache
from service.store.base import Event, Store
from service.toplists import TopLists

logger = logging.getLogger(__name__)

N_USER_LOCKS = 256
COMPACT_AFTER = 64
"""Overlaid items scored outside the index before it is rebuilt with them."""
COMPACT_EVERY_S = 1.0
"""Longest wait, in seconds, before pending overlaid items are rebuilt into the index."""
TOPLIST_MAX_OVERLAY = 2048
"""Most overlaid items the precomputed lists are used with: each is scored per request (on
tiktok with 1,719 overlaid items the lists path takes 123 us, a search 154 us)."""
Fallback = Literal["popular"]


@dataclass(frozen=True)
class RecommendQuery:
    user_id: str
    k: int
    exclude_seen: bool = True


@dataclass(frozen=True)
class Recommendation:
    user_id: str
    items: list[tuple[str, float]]
    model_version: str
    fallback: Fallback | None


@dataclass(frozen=True)
class _UserState:
    vector: np.ndarray | None
    exclude: np.ndarray
    bundle_row: int | None = None
    """The user's bundle row when ``vector`` is that row's exported vector, unchanged."""


def _with_overlaid(
    scores: np.ndarray,
    items: np.ndarray,
    overlaid: np.ndarray,
    overlaid_scores: np.ndarray,
    exclude: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A top-``k`` (``scores``, ``items``) that left ``overlaid`` out, with those merged in.

    ``overlaid`` (sorted) are scored exactly by ``overlaid_scores``; those in ``exclude``
    (sorted) stay out. Only their own top ``k`` (ties at the cut included) can enter.
    """
    allowed = ~is_member(overlaid, exclude)
    extra, extra_items = overlaid_scores[allowed], overlaid[allowed]
    if extra.size > k:
        best = extra >= np.partition(extra, extra.size - k)[extra.size - k]
        extra, extra_items = extra[best], extra_items[best]
    return merge_top_k(scores, items, extra, extra_items, k, MISSING_ITEM)


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` itself when nothing can modify it (a loaded bundle's), else a read-only copy."""
    return frozen(array)


_NO_ITEMS = _read_only(np.empty(0, dtype=np.int64))
"""An empty item list (catalog indices), shared."""


class Recommender:
    """Top-k recommendations and online updates for one model version."""

    def __init__(
        self,
        bundle: Bundle,
        index: ItemIndex,
        store: Store,
        settings: Settings,
        on_finetune: Callable[[float], None] | None = None,
    ) -> None:
        if index.size != bundle.n_items or index.dim != bundle.dim:
            raise ValueError(
                f"index ({index.size} x {index.dim}) does not match the bundle "
                f"({bundle.n_items} x {bundle.dim})"
            )
        self.bundle = bundle
        self.index = index
        self._store = store
        self._settings = settings
        self._on_finetune = on_finetune
        self._items = _read_only(bundle.item_embeddings)
        self._users = _read_only(bundle.user_embeddings)
        self._item_scale = mean_square(self._items)
        self._mean_user = _read_only(bundle.user_embeddings.mean(axis=0).astype(np.float32))
        self._user_index = {user: row for row, user in enumerate(bundle.user_ids)}
        self._item_index = {item: col for col, item in enumerate(bundle.item_ids)}
        popularity = bundle.item_popularity()
        self._popular = _read_only(np.lexsort((np.arange(bundle.n_items), -popularity)))
        self._popularity = _read_only(popularity.astype(np.float32))
        self._locks = [threading.Lock() for _ in range(N_USER_LOCKS)]
        self.finetune_method: FinetuneMethod = resolve_method(
            settings.finetune_method, bundle.item_layers is not None, bundle.model_version
        )
        self._item_degrees = popularity
        if bundle.user_ego is not None and bundle.item_layers is not None:
            self._user_ego = _read_only(bundle.user_ego)
            self._item_layers = _read_only(bundle.item_layers)
            self._mean_ego = _read_only(bundle.user_ego.mean(axis=0).astype(np.float32))
        self._overlay = (
            ItemOverlay(bundle) if settings.fold_items and bundle.item_layers is not None else None
        )
        self._revision = 0
        self._posted_users: set[str] = set()
        """Users with at least one logged interaction (from the log :meth:`refresh` reads):
        only their stored items are read on a request."""
        self._sync_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._served: tuple[ItemIndex, int] = (index, 0)
        self._compacted_at = time.monotonic()
        self._toplists = (
            TopLists(
                index,
                self._users,
                bundle.train_indptr,
                bundle.train_indices,
                settings.precompute_depth,
                settings.toplist_cache_users,
            )
            if settings.precompute_depth
            else None
        )
        self._overlay64: tuple[int, np.ndarray] = (-1, np.empty((0, bundle.dim)))
        self.responses = (
            ResponseCache(settings.response_cache_mb * 2**20)
            if settings.response_cache_mb and self.finetune_method != "bpr"
            else None
        )
        """Rendered answers of the current log revision (None: off, or ``bpr``, whose
        stored vectors change after the interaction that causes them is logged)."""
        self._no_pending = (
            _NO_ITEMS,
            _read_only(np.empty((0, bundle.dim), dtype=np.float32)),
        )
        self.refresh()

    @classmethod
    def load(
        cls,
        settings: Settings,
        store: Store,
        path: Path | None = None,
        on_finetune: Callable[[float], None] | None = None,
    ) -> Recommender:
        """Read the bundle at ``path`` (default: settings.bundle_path) and index its items."""
        bundle = read_bundle(path or settings.bundle_path)
        started = time.perf_counter()
        index = load_index(bundle, path or settings.bundle_path, settings)
        logger.info(
            "loaded %s: %d users, %d items, dim %d, %s index in %.2fs",
            bundle.model_version,
            bundle.n_users,
            bundle.n_items,
            bundle.dim,
            index.kind,
            time.perf_counter() - started,
        )
        return cls(bundle, index, store, settings, on_finetune)

    @property
    def model_version(self) -> str:
        return self.bundle.model_version

    def unknown_items(self, item_ids: Sequence[str]) -> list[str]:
        """The ids in ``item_ids`` that are not in this model's catalog, in order."""
        return [item for item in item_ids if item not in self._item_index]

    def recommend(
        self, user_id: str, k: int, exclude_seen: bool = True, *, refresh: bool = True
    ) -> Recommendation:
        return self.recommend_many([RecommendQuery(user_id, k, exclude_seen)], refresh=refresh)[0]

    def recommend_many(
        self, queries: Sequence[RecommendQuery], *, refresh: bool = True
    ) -> list[Recommendation]:
        """Top-k for each query; users with a vector are searched in one index call.

        Items re-propagated with online interactions (the overlay) are left out of the index
        search and scored exactly, then merged in. A bundle user with the bundle's vector is
        answered from the precomputed lists (:class:`TopLists`) when they hold enough items.
        ``refresh=False`` skips reading the log first: the caller has just called
        :meth:`refresh`.
        """
        if refresh:
            self.refresh()
        snapshot = None if self._overlay is None else self._overlay.snapshot
        index, overlay_items, overlay_vectors = self._search_state(snapshot)
        states = [self._user_state(query.user_id, query.exclude_seen) for query in queries]
        results: dict[int, list[tuple[str, float]]] = {}
        for row, (query, state) in enumerate(zip(queries, states, strict=True)):
            listed = self._from_toplist(query, state, snapshot)
            if listed is not None:
                results[row] = listed
        vectors = {
            row: state.vector
            for row, state in enumerate(states)
            if state.vector is not None and row not in results
        }
        personal = list(vectors)
        if personal:
            k_max = max(queries[row].k for row in personal)
            excludes = [states[row].exclude for row in personal]
            if overlay_items.size:
                excludes = [np.union1d(exclude, overlay_items) for exclude in excludes]
            found = index.search(np.stack(list(vectors.values())), k_max, excludes)
            for position, row in enumerate(personal):
                k = queries[row].k
                scores, items = found.scores[position, :k], found.items[position, :k]
                if overlay_items.size:
                    extra = overlay_vectors.astype(np.float64) @ vectors[row].astype(np.float64)
                    scores, items = _with_overlaid(
                        scores, items, overlay_items, extra, states[row].exclude, k
                    )
                results[row] = self._named(items, scores)
        answers = []
        for row, (query, state) in enumerate(zip(queries, states, strict=True)):
            if row in results:
                answers.append(
                    Recommendation(query.user_id, results[row], self.model_version, None)
                )
                continue
            if self._settings.unknown_user == "404":
                raise UnknownUserError(query.user_id)
            answers.append(
                Recommendation(
                    query.user_id,
                    self._popular_items(query.k, state.exclude),
                    self.model_version,
                    "popular",
                )
            )
        return answers

    def record(self, events: Sequence[Event]) -> int:
        """Validate, durably store (then, for ``bpr``, fine-tune every touched user); return items.

        Raises :class:`UnknownItemsError` before writing anything when an event names an
        item outside this model's catalog.
        """
        unknown = {
            position: missing
            for position, event in enumerate(events)
            if (missing := self.unknown_items(event.item_ids))
        }
        if unknown:
            raise UnknownItemsError(unknown)
        self._store.append(events)
        if self.finetune_method == "bpr":
            for user_id in dict.fromkeys(event.user_id for event in events):
                with self._lock(user_id):
                    start = self._store.get_vector(user_id, self.model_version)
                    self._refresh_vector(user_id, self._store.seen(user_id), start)
        return sum(len(event.item_ids) for event in events)

    def item_vectors(self) -> np.ndarray:
        """The item vectors served now: the bundle's, with the overlay's rows swapped in."""
        self.refresh()
        return self._served_vectors(None if self._overlay is None else self._overlay.snapshot)

    def _served_vectors(self, snapshot: OverlaySnapshot | None) -> np.ndarray:
        """A copy of the bundle's item vectors with ``snapshot``'s overlaid rows swapped in."""
        served = self._items.copy()
        if snapshot is not None:
            served[snapshot.items] = snapshot.vectors
        return served

    def _from_toplist(
        self, query: RecommendQuery, state: _UserState, snapshot: OverlaySnapshot | None
    ) -> list[tuple[str, float]] | None:
        """The answer from the user's precomputed list and the overlay, or None: search.

        Every overlaid item is left out of the list (its vector is no longer the bundle's)
        and scored exactly, as a search over the served vectors would score it.
        """
        if (
            self._toplists is None
            or state.bundle_row is None
            or state.vector is None
            or not query.exclude_seen
        ):
            return None
        hidden = _NO_ITEMS if snapshot is None else snapshot.items
        if hidden.size > TOPLIST_MAX_OVERLAY:
            return None
        found = self._toplists.top(state.bundle_row, query.k, hidden)
        if found is None:
            return None
        scores, items = found
        if snapshot is not None and hidden.size:
            extra = self._overlay_scores(snapshot, state.vector)
            scores, items = _with_overlaid(scores, items, hidden, extra, state.exclude, query.k)
        return self._named(items, scores)

    def _overlay_scores(self, snapshot: OverlaySnapshot, vector: np.ndarray) -> np.ndarray:
        """Float64 scores of every overlaid item, as a search over the served vectors rescores.

        The float64 copy of the snapshot's vectors is made once per overlay step.
        """
        step, vectors = self._overlay64
        if step != snapshot.step:
            vectors = snapshot.vectors.astype(np.float64)
            self._overlay64 = (snapshot.step, vectors)
        return np.asarray(vectors @ vector.astype(np.float64))

    def _search_state(
        self, snapshot: OverlaySnapshot | None
    ) -> tuple[ItemIndex, np.ndarray, np.ndarray]:
        """The index to search and the overlaid items it does not hold yet, with their vectors.

        The searched index holds the overlay as of some step; items changed since are left out
        of its search and scored exactly. Once more than :data:`COMPACT_AFTER` items are
        pending, or some have been for :data:`COMPACT_EVERY_S`, the index is rebuilt over the
        served vectors (one copy of the catalog for the exact index) and swapped in; the
        bundle's own index is never modified.
        """
        if snapshot is None:
            return self.index, *self._no_pending
        index, step = self._served
        if snapshot.step == step:
            return index, *self._no_pending
        pending = snapshot.changed > step
        if self._due_for_compaction(int(pending.sum())):
            with self._compact_lock:
                index, step = self._served
                if self._due_for_compaction(int((snapshot.changed > step).sum())):
                    served = self._served_vectors(snapshot)
                    index = build_index(served, self.index.kind, self._settings)
                    step = snapshot.step
                    self._served = (index, step)
                    self._compacted_at = time.monotonic()
            pending = snapshot.changed > step
        return index, snapshot.items[pending], snapshot.vectors[pending]

    def _due_for_compaction(self, pending: int) -> bool:
        """Rebuild when many items are pending, or any have waited :data:`COMPACT_EVERY_S`."""
        waited = time.monotonic() - self._compacted_at
        return pending > COMPACT_AFTER or (pending > 0 and waited >= COMPACT_EVERY_S)

    def refresh(self) -> int:
        """Apply the interactions appended since the last look to the item overlay (if
        items move); return the interaction-log revision this recommender has now seen."""
        with self._sync_lock:
            revision, pairs = self._store.events_since(self._revision)
            self._posted_users.update(user_id for user_id, _ in pairs)
            if pairs and self._overlay is not None:
                started = time.perf_counter()
                self._overlay.apply(pairs)
                logger.debug(
                    "item overlay: %d events in %.1f ms",
                    len(pairs),
                    (time.perf_counter() - started) * 1e3,
                )
            self._revision = revision
            return revision

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The vector ``/recommend`` uses for ``user_id`` now (None: an unknown user)."""
        self.refresh()
        return self._user_state(user_id, exclude_seen=False).vector

    def _lock(self, user_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(user_id.encode()) % N_USER_LOCKS]

    def _train_items(self, user_id: str) -> np.ndarray:
        row = self._user_index.get(user_id)
        if row is None:
            return _NO_ITEMS
        return self.bundle.seen_items(row).astype(np.int64)

    def _seen_indices(self, seen: set[str]) -> np.ndarray:
        """Catalog indices of stored item ids (ids absent from this version are skipped)."""
        found = [self._item_index[item] for item in seen if item in self._item_index]
        return np.asarray(sorted(found), dtype=np.int64)

    def _user_state(self, user_id: str, exclude_seen: bool) -> _UserState:
        posted = (
            self._seen_indices(self._store.seen(user_id))
            if user_id in self._posted_users
            else _NO_ITEMS
        )
        train = self._train_items(user_id)
        row = self._user_index.get(user_id)
        vector: np.ndarray | None = None
        if self.finetune_method == "bpr":
            vector = self._store.get_vector(user_id, self.model_version)
            if vector is None and posted.size:
                vector = self._refold(user_id)
        elif posted.size:
            vector = self._fold(row, np.union1d(train, posted))
        bundle_row = None
        if vector is None and row is not None:
            vector = self._users[row]
            bundle_row = row
        if not exclude_seen:
            return _UserState(vector, _NO_ITEMS, bundle_row)
        exclude = np.union1d(train, posted) if posted.size else train
        return _UserState(vector, exclude, bundle_row)

    def _fold(self, row: int | None, positives: np.ndarray) -> np.ndarray:
        """The deterministic (``propagate`` or ``mean``) vector of a user with these items."""
        started = time.perf_counter()
        if self.finetune_method == "propagate":
            ego = self._mean_ego if row is None else self._user_ego[row]
            vector = fold_in_user(ego, self._item_layers, positives, self._item_degrees)
        else:
            start = self._mean_user if row is None else self._users[row]
            vector = mean_fold_in(
                self._items, start, positives, self._settings.finetune_beta, self._item_scale
            )
        if self._on_finetune is not None:
            self._on_finetune(time.perf_counter() - started)
        return np.asarray(vector, dtype=np.float32)

    def _refold(self, user_id: str) -> np.ndarray:
        """Fine-tune a vector for a user with stored interactions but none for this version."""
        with self._lock(user_id):
            stored = self._store.get_vector(user_id, self.model_version)
            if stored is not None:
                return stored
            return self._refresh_vector(user_id, self._store.seen(user_id), None)

    def _refresh_vector(self, user_id: str, seen: set[str], start: np.ndarray | None) -> np.ndarray:
        """BPR-fine-tune from ``start`` (else the bundle's or the mean vector) and store it.

        The caller holds the user's lock.
        """
        if start is None:
            row = self._user_index.get(user_id)
            start = self._mean_user if row is None else self._users[row]
        positives = np.union1d(self._train_items(user_id), self._seen_indices(seen))
        seed = zlib.crc32(f"{user_id}|{self.model_version}|{len(positives)}".encode())
        started = time.perf_counter()
        vector = finetune_user(
            self._items,
            start,
            positives,
            np.random.default_rng(seed),
            steps=self._settings.finetune_steps,
            lr=self._settings.finetune_lr,
            n_neg=self._settings.finetune_negatives,
            prox=self._settings.finetune_prox,
            item_scale=self._item_scale,
            method="bpr",
        )
        if self._on_finetune is not None:
            self._on_finetune(time.perf_counter() - started)
        self._store.put_vector(user_id, self.model_version, vector)
        return vector

    def _named(self, items: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
        ids = self.bundle.item_ids
        return [
            (ids[item], float(score))
            for item, score in zip(items.tolist(), scores.tolist(), strict=True)
            if item != MISSING_ITEM
        ]

    def _popular_items(self, k: int, exclude: np.ndarray) -> list[tuple[str, float]]:
        order = self._popular[~np.isin(self._popular, exclude)][:k]
        return self._named(order, self._popularity[order])
