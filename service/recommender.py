"""The served model: a thin façade over the catalog, the online state and the served items.

A :class:`Recommender` serves one loaded bundle. Its bundle arrays and the bundle's index are
read-only; what the posted interactions change lives in an :class:`~service.online.OnlineState`
that a background :class:`~service.worker.OnlineWorker` keeps following the store's log, and
that requests only read (immutable views, swapped). A reload builds a new Recommender and
swaps one reference (see ``service.main``), so in-flight requests finish on the old one.

How a user's vector follows their posted interactions depends on the update method
(``PROMPTMM_FINETUNE_METHOD``, :mod:`service.strategies`, :mod:`service.finetune`):

- ``propagate`` (the default when the bundle carries the student's LightGCN layers) and
  ``mean`` are running sums over the user's items (training + posted), updated per logged
  pair at a cost bounded by the event, never stored per user: every replica derives the same
  vector from the shared log.
- ``bpr`` continues from the user's previous vector, so its result is stored per model version
  right after the interaction is; a user with stored interactions but no vector for this
  version (after a reload) is re-folded on first use.

Items move too with ``propagate`` on a bundle with layers (``PROMPTMM_FOLD_ITEMS``,
:mod:`service.overlay`); moved items are scored exactly beside the index until the worker
rebuilds it with them (:mod:`service.served`).

Freshness: a write is durable when acknowledged. The worker applies it within milliseconds;
a request that finds the log at most :data:`CATCH_UP_PAIRS` ahead of the state applies that
tail itself first (so a poster reads their own write, on any replica), and one that finds it
further ahead (a flood) answers from the current state while the worker catches up.

Start-up loads the newest snapshot of this model version (:meth:`Store.get_snapshot`) and
replays only the log after it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from bundle import Bundle, frozen, read_bundle
from service.catalog import NO_ITEMS, Catalog
from service.config import Settings
from service.errors import UnknownItemsError, UnknownUserError
from service.finetune import FinetuneMethod, finetune_user, mean_square, resolve_method
from service.index import ItemIndex, build_index, exact_scores, is_member
from service.index_files import load_index
from service.online import ItemsView, OnlineState, encode
from service.overlay import ItemSide
from service.response_cache import ResponseCache, Scope
from service.served import search, with_moved
from service.store.base import Event, Store, StoreError
from service.strategies import MeanStrategy, PropagateStrategy, UserStrategy
from service.toplists import TopLists
from service.worker import COMPACT_AFTER, OnlineWorker

logger = logging.getLogger(__name__)

N_USER_LOCKS = 256
CATCH_UP_PAIRS = 256
"""Most log pairs a request applies itself before answering (one worker chunk)."""
CATCH_UP_WAIT_S = 0.02
"""Longest wait of a request for the worker's turn on the state (one chunk)."""
REPLAY_CHUNK = 65_536
"""Log pairs applied per step when replaying at start-up or :meth:`Recommender.sync`."""
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
        self.catalog = Catalog(bundle)
        self._store = store
        self._settings = settings
        self._on_finetune = on_finetune
        self._items = frozen(bundle.item_embeddings)
        self._users = frozen(bundle.user_embeddings)
        self._item_scale = mean_square(self._items)
        self._mean_user = frozen(bundle.user_embeddings.mean(axis=0).astype(np.float32))
        self._locks = [threading.Lock() for _ in range(N_USER_LOCKS)]
        self.finetune_method: FinetuneMethod = resolve_method(
            settings.finetune_method, bundle.item_layers is not None, bundle.model_version
        )
        strategy: UserStrategy | None = None
        item_side = None
        if self.finetune_method == "propagate":
            strategy = PropagateStrategy(bundle)
            if settings.fold_items:
                item_side = ItemSide(bundle)
        elif self.finetune_method == "mean":
            strategy = MeanStrategy(bundle, settings.finetune_beta, self._item_scale)
        self._online = OnlineState(
            self.catalog, strategy, item_side, index, self._items, on_finetune
        )
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
        snapshot_revision = self._restore()
        self.responses = (
            ResponseCache(
                settings.response_cache_mb * 2**20,
                _AnswerCheck(self._online, self._users).still_valid,
            )
            if settings.response_cache_mb and self.finetune_method != "bpr"
            else None
        )
        """Rendered answers, each kept while no write changed it (None: off, or ``bpr``,
        whose stored vectors change after the interaction that causes them is logged)."""
        self._worker = OnlineWorker(
            self._online,
            store,
            partial(build_index, kind=index.kind, settings=settings),
            _snapshotter(self._online, bundle.model_version, self.finetune_method),
            bundle.model_version,
            snapshot_revision,
        )
        self._worker.start()
        weakref.finalize(self, self._worker.stop)

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

    def close(self) -> None:
        """Stop the background worker (requests in flight still answer)."""
        self._worker.stop()

    def unknown_items(self, item_ids: Sequence[str]) -> list[str]:
        """The ids in ``item_ids`` that are not in this model's catalog, in order."""
        return self.catalog.unknown_items(item_ids)

    def recommend(
        self, user_id: str, k: int, exclude_seen: bool = True, *, refresh: bool = True
    ) -> Recommendation:
        return self.recommend_many([RecommendQuery(user_id, k, exclude_seen)], refresh=refresh)[0]

    def recommend_many(
        self, queries: Sequence[RecommendQuery], *, refresh: bool = True
    ) -> list[Recommendation]:
        """Top-k for each query over the current view; users with a vector share one search.

        A bundle user with the bundle's vector is answered from the precomputed lists
        (:class:`TopLists`) when they hold enough items. ``refresh=False`` skips the look at
        the log first: the caller has just called :meth:`refresh`.
        """
        if refresh:
            self.refresh()
        view = self._online.items
        states = [self._user_state(query.user_id, query.exclude_seen) for query in queries]
        results: dict[int, list[tuple[str, float]]] = {}
        for row, (query, state) in enumerate(zip(queries, states, strict=True)):
            listed = self._from_toplist(query, state, view)
            if listed is not None:
                results[row] = listed
        personal = [
            row
            for row, state in enumerate(states)
            if state.vector is not None and row not in results
        ]
        if personal:
            vectors = np.stack([states[row].vector for row in personal])  # type: ignore[misc]
            found = search(
                view,
                vectors,
                [states[row].exclude for row in personal],
                [queries[row].k for row in personal],
            )
            for row, (scores, items) in zip(personal, found, strict=True):
                results[row] = self.catalog.named(items, scores)
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
                    self.catalog.popular(query.k, state.exclude),
                    self.model_version,
                    "popular",
                )
            )
        return answers

    def record(self, events: Sequence[Event]) -> int:
        """Validate and durably store (then, for ``bpr``, fine-tune every touched user);
        return the number of items. The online state follows in the background.

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
        self._worker.wake()
        if self.finetune_method == "bpr":
            for user_id in dict.fromkeys(event.user_id for event in events):
                with self._lock(user_id):
                    start = self._store.get_vector(user_id, self.model_version)
                    self._refresh_vector(user_id, self._store.seen(user_id), start)
        return sum(len(event.item_ids) for event in events)

    def scope(self, recommendation: Recommendation, k: int, exclude_seen: bool) -> Scope:
        """What ``recommendation`` (for ``k`` items) depends on, for the response cache."""
        found = (self.catalog.item(item_id) for item_id, _ in recommendation.items)
        items = np.asarray(sorted(item for item in found if item is not None), dtype=np.int64)
        full = len(recommendation.items) == k
        last = recommendation.items[-1][1] if full and recommendation.items else -np.inf
        return Scope(
            recommendation.user_id,
            exclude_seen,
            items,
            float(last),
            recommendation.fallback is not None,
        )

    def refresh(self) -> int:
        """Apply the log's tail first when it is short (see the module); return the log
        revision the served view reflects."""
        online = self._online
        behind = self._store.latest_revision() - online.revision
        if 0 < behind <= CATCH_UP_PAIRS:
            online.catch_up(self._store, CATCH_UP_PAIRS, CATCH_UP_WAIT_S)
        return online.items.revision

    def sync(self) -> int:
        """Apply the whole log now, however long (tests, benchmarks, start-up); return the
        revision reached."""
        while not self._online.catch_up(self._store, REPLAY_CHUNK, -1):
            pass
        return self._online.revision

    def snapshot(self) -> int:
        """Checkpoint the online state now; return the log revision it reflects."""
        return self._worker.write_snapshot()

    def item_vectors(self) -> np.ndarray:
        """The item vectors served after the whole log: the bundle's, moved rows swapped in."""
        self.sync()
        with self._online.lock:
            return self._online.served_vectors()[0]

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The vector ``/recommend`` uses for ``user_id`` after the whole log (None: unknown)."""
        self.sync()
        return self._user_state(user_id, exclude_seen=False).vector

    def _restore(self) -> int:
        """Load the newest snapshot of this model (if any and sound), then replay the tail;
        return the revision of the snapshot loaded (0: none)."""
        online = self._online
        started = time.perf_counter()
        with online.lock:
            found = self._store.get_snapshot(self.model_version)
            if found is not None and found[0] > self._store.latest_revision():
                logger.warning(
                    "ignoring the online-state snapshot at revision %d: the log is shorter "
                    "(it was reset)",
                    found[0],
                )
                found = None
            if found is not None:
                try:
                    online.restore(found[1], self.model_version, self.finetune_method)
                except StoreError as exc:
                    logger.warning("ignoring the online-state snapshot: %s", exc)
                    fresh_side = None if online.item_side is None else ItemSide(self.bundle)
                    self._online = online = OnlineState(
                        self.catalog,
                        online.strategy,
                        fresh_side,
                        self.index,
                        self._items,
                        self._on_finetune,
                    )
        from_revision = online.revision
        revision = self.sync()
        if online.items.pending.size > COMPACT_AFTER:
            with online.lock:
                served, at = online.served_vectors()
                online.swap_index(build_index(served, self.index.kind, self._settings), at)
        logger.info(
            "online state of %s: snapshot at revision %d, replayed to %d in %.2fs",
            self.model_version,
            from_revision,
            revision,
            time.perf_counter() - started,
        )
        return from_revision

    def _from_toplist(
        self, query: RecommendQuery, state: _UserState, view: ItemsView
    ) -> list[tuple[str, float]] | None:
        """The answer from the user's precomputed list and the moved items, or None: search.

        Every moved item is left out of the list (its vector is no longer the bundle's) and
        scored exactly, as a search over the served vectors would score it.
        """
        if (
            self._toplists is None
            or state.bundle_row is None
            or state.vector is None
            or not query.exclude_seen
            or view.moved is None
            or view.moved64 is None
        ):
            return None
        found = self._toplists.top(state.bundle_row, query.k, view.moved)
        if found is None:
            return None
        scores, items = found
        if view.moved.size:
            extra = exact_scores(view.moved64, state.vector)
            scores, items = with_moved(scores, items, view.moved, extra, state.exclude, query.k)
        return self.catalog.named(items, scores)

    def _lock(self, user_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(user_id.encode()) % N_USER_LOCKS]

    def _user_state(self, user_id: str, exclude_seen: bool) -> _UserState:
        entry = self._online.users.get(user_id)
        row = self.catalog.user_row(user_id)
        vector: np.ndarray | None = None
        if self.finetune_method == "bpr":
            vector = self._store.get_vector(user_id, self.model_version)
            if vector is None and entry is not None:
                vector = self._refold(user_id)
        elif entry is not None:
            vector = entry.vector
        bundle_row = None
        if vector is None and row is not None:
            vector = self._users[row]
            bundle_row = row
        if not exclude_seen:
            return _UserState(vector, NO_ITEMS, bundle_row)
        exclude = entry.exclude if entry is not None else self.catalog.train_items(row)
        return _UserState(vector, exclude, bundle_row)

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
        row = self.catalog.user_row(user_id)
        if start is None:
            start = self._mean_user if row is None else self._users[row]
        known = [item for item in map(self.catalog.item, seen) if item is not None]
        positives = np.union1d(self.catalog.train_items(row), np.asarray(known, dtype=np.int64))
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


SCORE_MARGIN = 1e-9
"""Relative slack when comparing a moved item's score with a cached answer's last score."""


class _AnswerCheck:
    """:meth:`still_valid` for the response cache (holds the state, not the Recommender)."""

    def __init__(self, online: OnlineState, bundle_users: np.ndarray) -> None:
        self._online = online
        self._users = bundle_users

    def still_valid(self, scope: Scope, revision: int) -> bool:
        """Whether the answer of ``scope`` rendered at ``revision`` is still the answer.

        It is unless the user changed since, or an item that moved since is in it or now
        scores within :data:`SCORE_MARGIN` of its last score (or it is shorter than ``k``);
        the fallback depends on the user only. Costs one dot product per moved item.
        """
        online = self._online
        entry = online.users.get(scope.user_id)
        if entry is not None and entry.revision > revision:
            return False
        if scope.fallback:
            return True
        changed = online.items.changed_since(revision)
        if changed is None:
            return False
        if scope.exclude_seen and entry is not None:
            changed = changed[~is_member(changed, entry.exclude)]
        elif scope.exclude_seen:
            row = online.catalog.user_row(scope.user_id)
            changed = changed[~is_member(changed, online.catalog.train_items(row))]
        if changed.size == 0:
            return True
        if is_member(changed, scope.items).any() or scope.last_score == -np.inf:
            return False
        vector = entry.vector if entry is not None else None
        if vector is None:
            row = online.catalog.user_row(scope.user_id)
            if row is None:
                return False
            vector = self._users[row]
        scores = exact_scores(online.item_vectors(changed), vector)
        bar = scope.last_score - SCORE_MARGIN * max(1.0, abs(scope.last_score))
        return not bool((scores >= bar).any())


def _snapshotter(
    online: OnlineState, model_version: str, method: str
) -> Callable[[], tuple[int, bytes]]:
    """The worker's checkpoint: the state's arrays copied under its lock, encoded outside."""

    def take() -> tuple[int, bytes]:
        with online.lock:
            revision, arrays = online.revision, online.to_arrays(model_version, method)
        return revision, encode(arrays)

    return take
