"""Item vectors that move with the interactions posted online (the item side of the fold-in).

Semantics (one online edge ``(u, j)`` at a time, in log order; see ``bundle.lightgcn``):

- An item's final embedding is ``(e_j^(0) + R_j / sqrt(d_j)) / (L + 1)`` with ``d_j`` its
  *current* degree (training users + online users), applied when the vector is read, and
  ``R_j = R_j^train + sum of its online edges' contributions``. ``R_j^train`` comes from the
  bundle (:func:`~bundle.lightgcn.item_training_sum`): training edges keep what they
  contributed in training.
- An online edge contributes its user's ``c_u = sum_{l<L} u^(l) / sqrt(d_u)``
  (:func:`~bundle.lightgcn.user_contribution`), ``u^(l)`` folded over the user's items at the
  items' training degrees, ``d_u`` the user's degree.
- A user's degree grows with each edge, which changes ``c_u``. The contributions of the
  user's last :data:`ONLINE_WINDOW` online edges follow it (they all hold the newest ``c_u``);
  an edge that leaves the window keeps the ``c_u`` it had then (it is compacted into
  ``R_j``). So edge number ``t`` of a user with ``n`` online edges contributes ``c_u`` as it
  was after edge ``min(t + W - 1, n - 1)``: a pure function of the log, whatever its batching.

Cost: ``O((items of the event + W) * dim)`` per event, never the user's or the item's
history. For a cold item (no training user) reached by a new user it is exactly the LightGCN
forward over the enlarged graph; otherwise the training side's degrees are frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bundle import Bundle
from bundle.lightgcn import item_final, item_training_sum

ONLINE_WINDOW = 128
"""Online edges per user whose contribution follows the user's current degree."""


@dataclass(frozen=True)
class Window:
    """A user's last online items (at most the window, oldest first) and their shared
    contribution (float64 (dim,))."""

    items: np.ndarray
    contribution: np.ndarray


class ItemSide:
    """Running item sums over online edges, online degrees and per-user windows.

    Not thread-safe: one writer (:class:`service.online.OnlineState`) owns it.
    """

    def __init__(self, bundle: Bundle, window: int = ONLINE_WINDOW) -> None:
        if bundle.item_layers is None:
            raise ValueError(f"bundle {bundle.model_version} has no LightGCN layers to fold in")
        if window < 1:
            raise ValueError(f"the online window must be >= 1 edge, got {window}")
        self.window = window
        self._n_layers = int(bundle.item_layers.shape[0])
        self._ego = bundle.item_layers[0] if self._n_layers else bundle.item_embeddings
        self._final = bundle.item_embeddings
        self._train_degrees = bundle.item_popularity()
        dim = bundle.dim
        self._slots: dict[int, int] = {}
        self._items = np.empty(0, dtype=np.int64)
        self._sums = np.empty((0, dim))
        self._degrees = np.empty(0, dtype=np.int64)
        self.windows: dict[str, Window] = {}

    @property
    def items(self) -> np.ndarray:
        """The items with online edges, in the order they got their first."""
        return self._items[: len(self._slots)]

    def add(self, user_id: str, items: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        """Add ``user_id``'s new online edges ``items`` (in order, new to the user), with
        ``contributions[k]`` the user's ``c_u`` after edge ``k``; return the items that moved.
        """
        if items.size == 0 or self._n_layers == 0:
            return np.empty(0, dtype=np.int64)
        old = self.windows.get(user_id)
        held = np.empty(0, dtype=np.int64) if old is None else old.items
        edges = np.concatenate([held, items])
        after = np.arange(edges.size) - held.size + self.window - 1
        moved = after >= 0
        latest = contributions[np.minimum(after[moved], items.size - 1)]
        if old is not None:
            latest[: int(moved[: held.size].sum())] -= old.contribution
        slots = self._slots_of(edges[moved])
        self._sums[slots] += latest
        self._degrees[self._slots_of(items)] += 1
        self.windows[user_id] = Window(edges[-self.window :].copy(), contributions[-1].copy())
        return np.asarray(edges[moved])

    def vectors(self, items: np.ndarray) -> np.ndarray:
        """The current float32 vectors of ``items`` (each with online edges)."""
        slots = np.asarray([self._slots[item] for item in items.tolist()], dtype=np.int64)
        train = self._train_degrees[items]
        sums = item_training_sum(self._final[items], self._ego[items], train, self._n_layers)
        sums += self._sums[slots]
        degrees = train + self._degrees[slots]
        return item_final(self._ego[items], sums, degrees, self._n_layers).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """The arrays :meth:`restore` takes back (copies)."""
        users = list(self.windows)
        windows = [self.windows[user] for user in users]
        lengths = np.asarray([window.items.size for window in windows], dtype=np.int64)
        return {
            "item_items": self.items.copy(),
            "item_sums": self._sums[: len(self._slots)].copy(),
            "item_degrees": self._degrees[: len(self._slots)].copy(),
            "window_users": np.asarray(users, dtype=object).astype(str),
            "window_lengths": lengths,
            "window_items": np.concatenate(
                [window.items for window in windows] or [np.empty(0, dtype=np.int64)]
            ),
            "window_contributions": np.stack(
                [window.contribution for window in windows] or [np.empty((0,))]
            ).reshape(len(windows), -1),
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take back what :meth:`state` returned (into an empty side)."""
        items = arrays["item_items"].astype(np.int64)
        self._slots = {item: slot for slot, item in enumerate(items.tolist())}
        self._items = items.copy()
        self._sums = arrays["item_sums"].astype(np.float64).reshape(items.size, -1).copy()
        self._degrees = arrays["item_degrees"].astype(np.int64).copy()
        bounds = np.concatenate([[0], np.cumsum(arrays["window_lengths"])])
        window_items = arrays["window_items"].astype(np.int64)
        contributions = arrays["window_contributions"].astype(np.float64)
        self.windows = {
            str(user): Window(
                window_items[bounds[n] : bounds[n + 1]].copy(), contributions[n].copy()
            )
            for n, user in enumerate(arrays["window_users"].tolist())
        }

    def _slots_of(self, items: np.ndarray) -> np.ndarray:
        """The rows of ``items`` in the running arrays, adding (zero) rows for new items."""
        fresh = [item for item in dict.fromkeys(items.tolist()) if item not in self._slots]
        if fresh:
            count = len(self._slots)
            needed = count + len(fresh)
            if needed > self._items.size:
                capacity = max(needed, 2 * self._items.size, 64)
                self._items = np.resize(self._items, capacity)
                sums = np.zeros((capacity, self._sums.shape[1]))
                sums[:count] = self._sums[:count]
                degrees = np.zeros(capacity, dtype=np.int64)
                degrees[:count] = self._degrees[:count]
                self._sums, self._degrees = sums, degrees
            for offset, item in enumerate(fresh):
                self._slots[item] = count + offset
                self._items[count + offset] = item
        return np.asarray([self._slots[item] for item in items.tolist()], dtype=np.int64)
