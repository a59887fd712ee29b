"""The online state: what the interaction log has changed, applied incrementally, read lock-free.

One :class:`OnlineState` per served model follows the store's append-ordered log
(:meth:`~service.store.base.Store.events_since`) from a revision. Applying a chunk of the
log costs ``O(pairs * L * dim)`` plus ``O(ONLINE_WINDOW * dim)`` per touched user (running
sums, :mod:`service.strategies` and :mod:`service.overlay`), never a user's or an item's
history; the whole state is a pure function of the log prefix it reflects, so every replica
that applied the same prefix holds the same state, however the log was chunked.

Readers never take a lock (read-copy-update):

- :attr:`OnlineState.users` maps a user with online items to an immutable :class:`UserView`
  (vector, excluded items); the writer replaces an entry, never mutates it;
- :attr:`OnlineState.items` is an immutable :class:`ItemsView` (the index to search, the
  items that changed since it was built with their vectors), replaced whole.

Only one thread applies at a time (:attr:`OnlineState.lock`): the background worker
(:mod:`service.worker`) in chunks, or a request catching up on a short tail
(:meth:`OnlineState.catch_up`), so a poster reads their own write.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.catalog import NO_ITEMS, Catalog
from service.index import ItemIndex, is_member
from service.overlay import ItemSide
from service.store.base import Store, StoreError
from service.strategies import PropagateStrategy, UserStrategy, UserSums, extend

TOPLIST_MAX_OVERLAY = 2048
"""Most moved items the precomputed lists are used with: each is scored per request (on
tiktok with 1,719 moved items the lists path takes 123 us, a search 154 us)."""
SNAPSHOT_FORMAT = 1
CHANGE_LOG = 4096
"""Most recent item changes a view lists (:meth:`ItemsView.changed_since`)."""


@dataclass(frozen=True)
class UserView:
    """A user with online items: the vector (None: stored elsewhere, ``bpr``), the sorted
    items never recommended to them (training + posted), and the revision it last changed."""

    vector: np.ndarray | None
    exclude: np.ndarray
    revision: int


@dataclass(frozen=True)
class ItemsView:
    """The served items at one log revision.

    ``index`` holds every item's vector as of ``index_revision``; ``pending`` are the items
    that moved after it (sorted), with their current vectors (float32 and float64);
    ``moved`` / ``moved64`` are all items that ever moved with their vectors (for the
    precomputed lists), or None when there are more than :data:`TOPLIST_MAX_OVERLAY`.
    ``change_revisions`` / ``change_items`` list the latest item changes in log order, every
    one after revision ``changes_floor``.
    """

    revision: int
    index: ItemIndex
    index_revision: int
    pending: np.ndarray
    pending_vectors: np.ndarray
    pending64: np.ndarray
    moved: np.ndarray | None
    moved64: np.ndarray | None
    change_revisions: np.ndarray
    change_items: np.ndarray
    changes_floor: int

    def changed_since(self, revision: int) -> np.ndarray | None:
        """The items whose vector changed after ``revision`` (sorted), or None when that is
        older than the changes listed."""
        if revision < self.changes_floor:
            return None
        start = int(np.searchsorted(self.change_revisions, revision, side="right"))
        return np.unique(self.change_items[start:])


class OnlineState:
    """Users' running sums, the item side and the published views (see the module).

    ``strategy`` None tracks only the posted items (``bpr`` stores its vectors itself);
    ``item_side`` None serves the bundle's item vectors. ``on_update`` is told how long each
    user's update took (seconds), once per user per applied chunk.
    """

    def __init__(
        self,
        catalog: Catalog,
        strategy: UserStrategy | None,
        item_side: ItemSide | None,
        index: ItemIndex,
        bundle_items: np.ndarray,
        on_update: Callable[[float], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self._on_update = on_update
        self.strategy = strategy
        self.item_side = item_side
        self._bundle_items = bundle_items
        self.lock = threading.Lock()
        self.revision = 0
        self._sums: dict[str, UserSums] = {}
        self.users: dict[str, UserView] = {}
        dim = bundle_items.shape[1]
        self._slot: dict[int, int] = {}
        self._moved_items = np.empty(0, dtype=np.int64)
        self._moved_at = np.empty(0, dtype=np.int64)
        self._moved_vectors = np.empty((0, dim), dtype=np.float32)
        empty32 = _frozen(np.empty((0, dim), dtype=np.float32))
        empty64 = _frozen(np.empty((0, dim)))
        self._change_revisions = NO_ITEMS
        self._change_items = NO_ITEMS
        self._changes_floor = 0
        self.items = ItemsView(
            0, index, 0, NO_ITEMS, empty32, empty64, NO_ITEMS, empty64, NO_ITEMS, NO_ITEMS, 0
        )

    def catch_up(self, store: Store, limit: int, wait_s: float) -> bool:
        """Apply at most ``limit`` pairs of the log's tail; False when there may be more.

        Waits at most ``wait_s`` for another applier (-1: as long as it takes); when it
        cannot get its turn, applies nothing and returns False.
        """
        if not self.lock.acquire(timeout=wait_s):
            return False
        try:
            revision, pairs = store.events_since(self.revision, limit)
            if revision != self.revision:
                self.apply(revision, pairs)
            return len(pairs) < limit
        finally:
            self.lock.release()

    def apply(self, revision: int, pairs: Sequence[tuple[str, str]]) -> None:
        """Apply ``pairs`` (the log up to ``revision``, from :attr:`revision` on) and publish.

        The caller holds :attr:`lock`. Unknown items, training items and repeats add nothing.
        """
        posted: dict[str, list[int]] = {}
        for user_id, item_id in pairs:
            item = self.catalog.item(item_id)
            if item is not None:
                posted.setdefault(user_id, []).append(item)
        moved: set[int] = set()
        for user_id, items in posted.items():
            started = time.perf_counter()
            moved.update(self._apply_user(user_id, items, revision).tolist())
            if self._on_update is not None and self.strategy is not None:
                self._on_update(time.perf_counter() - started)
        self.revision = revision
        self._publish(sorted(moved), revision)

    def _apply_user(self, user_id: str, items: list[int], revision: int) -> np.ndarray:
        """Fold ``items`` (in log order) into ``user_id``; return the items that moved."""
        view = self.users.get(user_id)
        row = self.catalog.user_row(user_id)
        exclude = view.exclude if view is not None else self.catalog.train_items(row)
        ordered = np.asarray(list(dict.fromkeys(items)), dtype=np.int64)
        new = ordered[~is_member(ordered, exclude)]
        if new.size == 0:
            return NO_ITEMS
        vector = None
        moved = NO_ITEMS
        if self.strategy is not None:
            state = self._sums.get(user_id)
            if state is None:
                state = self.strategy.start(row, self.catalog.train_items(row))
            final, prefix, degrees = extend(state, self.strategy.terms(new))
            self._sums[user_id] = final
            vector = _frozen(self.strategy.vector(final))
            if self.item_side is not None and isinstance(self.strategy, PropagateStrategy):
                contributions = self.strategy.contributions(state, prefix, degrees)
                moved = self.item_side.add(user_id, new, contributions)
        self.users[user_id] = UserView(vector, _frozen(np.union1d(exclude, new)), revision)
        return moved

    def _publish(self, moved: list[int], revision: int) -> None:
        """Recompute the moved items' vectors and swap in the next :class:`ItemsView`."""
        current = self.items
        if not moved:
            if revision != current.revision:
                self.items = _replace_revision(current, revision)
            return
        assert self.item_side is not None
        items = np.asarray(moved, dtype=np.int64)
        slots = self._slots_of(items)
        self._moved_vectors[slots] = self.item_side.vectors(items)
        self._moved_at[slots] = revision
        revisions = np.concatenate([self._change_revisions, np.full(items.size, revision)])
        changed = np.concatenate([self._change_items, items])
        if revisions.size > CHANGE_LOG:
            self._changes_floor = int(revisions[-CHANGE_LOG - 1])
            revisions, changed = revisions[-CHANGE_LOG:], changed[-CHANGE_LOG:]
        self._change_revisions, self._change_items = _frozen(revisions), _frozen(changed)
        self.items = self._view(revision, current.index, current.index_revision)

    def _slots_of(self, items: np.ndarray) -> np.ndarray:
        """Rows of ``items`` in the moved-item arrays, added (grown) for new ones."""
        fresh = [item for item in items.tolist() if item not in self._slot]
        count = len(self._slot)
        if count + len(fresh) > self._moved_items.size:
            capacity = max(count + len(fresh), 2 * self._moved_items.size, 64)
            grown = np.zeros((capacity, self._bundle_items.shape[1]), dtype=np.float32)
            grown[:count] = self._moved_vectors[:count]
            self._moved_items = np.resize(self._moved_items, capacity)
            self._moved_at = np.resize(self._moved_at, capacity)
            self._moved_vectors = grown
        for offset, item in enumerate(fresh):
            self._moved_items[count + offset] = item
            self._slot[item] = count + offset
        return np.asarray([self._slot[item] for item in items.tolist()], dtype=np.int64)

    def _view(self, revision: int, index: ItemIndex, index_revision: int) -> ItemsView:
        """The view of every moved item's current vector (vectorised: no per-item work)."""
        count = len(self._slot)
        items = self._moved_items[:count]
        pending = np.flatnonzero(self._moved_at[:count] > index_revision)
        pending = pending[np.argsort(items[pending])]
        vectors = self._moved_vectors[pending]
        moved_items: np.ndarray | None = None
        moved64: np.ndarray | None = None
        if count <= TOPLIST_MAX_OVERLAY:
            order = np.argsort(items)
            moved_items = _frozen(items[order])
            moved64 = _frozen(self._moved_vectors[order].astype(np.float64))
        return ItemsView(
            revision,
            index,
            index_revision,
            _frozen(items[pending]),
            _frozen(vectors),
            _frozen(vectors.astype(np.float64)),
            moved_items,
            moved64,
            self._change_revisions,
            self._change_items,
            self._changes_floor,
        )

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        """The current float32 vectors of ``items`` (lock-free: rows are replaced whole)."""
        slots = np.asarray([self._slot.get(item, -1) for item in items.tolist()], dtype=np.int64)
        vectors: np.ndarray = self._bundle_items[items].copy()
        known = slots >= 0
        vectors[known] = self._moved_vectors[slots[known]]
        return vectors

    def served_vectors(self) -> tuple[np.ndarray, int]:
        """A copy of the bundle's item vectors with every moved row swapped in, and the
        revision it reflects. The caller holds :attr:`lock`."""
        served = self._bundle_items.copy()
        count = len(self._slot)
        served[self._moved_items[:count]] = self._moved_vectors[:count]
        return served, self.revision

    def swap_index(self, index: ItemIndex, index_revision: int) -> None:
        """Serve ``index`` (built from :meth:`served_vectors` at ``index_revision``); the
        items that moved after it stay pending. The caller holds :attr:`lock`."""
        self.items = self._view(self.revision, index, index_revision)

    def user_state(self, user_id: str) -> UserSums | None:
        """The running sums of a user with online items (None: none, or no strategy)."""
        return self._sums.get(user_id)

    def to_arrays(self, model_version: str, method: str) -> dict[str, np.ndarray]:
        """The derived state as arrays (copies) for :func:`encode`. The caller holds
        :attr:`lock`."""
        users = list(self.users)
        views = [self.users[user] for user in users]
        sums = [self._sums.get(user) for user in users]
        arrays: dict[str, np.ndarray] = {
            "format": np.asarray(SNAPSHOT_FORMAT),
            "model_version": np.asarray(model_version),
            "method": np.asarray(method),
            "revision": np.asarray(self.revision, dtype=np.int64),
            "users": np.asarray(users, dtype=object).astype(str),
            "user_revisions": np.asarray([view.revision for view in views], dtype=np.int64),
            "exclude_lengths": np.asarray([view.exclude.size for view in views], dtype=np.int64),
            "excludes": np.concatenate([view.exclude for view in views] or [NO_ITEMS]),
        }
        if self.strategy is not None and all(state is not None for state in sums):
            known = [state for state in sums if state is not None]
            dim = self._bundle_items.shape[1]
            arrays["starts"] = np.asarray([state.start for state in known]).reshape(-1, dim)
            arrays["sums"] = np.asarray([state.sums for state in known]).reshape(
                len(known), -1, dim
            )
            arrays["degrees"] = np.asarray([state.degree for state in known], dtype=np.int64)
        if self.item_side is not None:
            arrays.update(self.item_side.state())
        return arrays

    def restore(self, blob: bytes, model_version: str, method: str) -> None:
        """Take back a state :meth:`to_arrays` took (:func:`encode`) for this model and method.

        Raises :class:`StoreError` when the snapshot is corrupt or for another model/method.
        The caller holds :attr:`lock`, on an empty state.
        """
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as loaded:
                arrays = {name: loaded[name] for name in loaded.files}
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"the online-state snapshot is corrupt: {exc}") from exc
        found = (int(arrays["format"]), str(arrays["model_version"]), str(arrays["method"]))
        if found != (SNAPSHOT_FORMAT, model_version, method):
            raise StoreError(
                f"the online-state snapshot is for {found}, not "
                f"{(SNAPSHOT_FORMAT, model_version, method)}"
            )
        users = [str(user) for user in arrays["users"].tolist()]
        bounds = np.concatenate([[0], np.cumsum(arrays["exclude_lengths"])])
        excludes = arrays["excludes"].astype(np.int64)
        for n, user in enumerate(users):
            vector = None
            if self.strategy is not None:
                state = UserSums(
                    arrays["starts"][n].copy(), arrays["sums"][n].copy(), int(arrays["degrees"][n])
                )
                self._sums[user] = state
                vector = _frozen(self.strategy.vector(state))
            exclude = _frozen(excludes[bounds[n] : bounds[n + 1]].copy())
            self.users[user] = UserView(vector, exclude, int(arrays["user_revisions"][n]))
        revision = int(arrays["revision"])
        self.revision = revision
        self._changes_floor = revision
        if self.item_side is not None:
            self.item_side.restore(arrays)
            self._publish(sorted(self.item_side.items.tolist()), revision)
        else:
            self._publish([], revision)


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """:meth:`OnlineState.to_arrays` as one ``.npz`` (no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array`` (a fresh array nobody else holds) made read-only in place: no copy."""
    array.flags.writeable = False
    return array


def _replace_revision(view: ItemsView, revision: int) -> ItemsView:
    return dataclasses.replace(view, revision=revision)
