"""Rendered ``/recommend`` answers, each kept while no write could have changed it.

An answer is a pure function of the served bundle and the interaction log when the user
update is deterministic (``propagate``, ``mean``). A write changes it only through

- the user's own state (their vector, their excluded items): the user's revision
  (:attr:`service.online.UserView.revision`) moves past the answer's;
- an item whose vector moved: it can change the answer only if it is in it, or if its new
  score for this user could reach the answer's last (``k``-th) score.

So each answer is kept with the log revision it was rendered at and its :class:`Scope` (its
items and last score), and :meth:`ResponseCache.get` asks the recommender whether anything
that changed since could change it (:meth:`service.recommender.Recommender.still_valid`); a
valid answer is re-tagged with the newer revision, so each change is checked once per answer.
A write elsewhere costs a cached answer one dot product per moved item, not a miss. A cache
lives as long as its :class:`~service.recommender.Recommender`, so a reload starts an empty one.

Thread-safe: the Redis path answers in the thread pool.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import NamedTuple

import numpy as np

ENTRY_OVERHEAD = 200
"""Bytes an answer costs beyond its body (key, tuples, dictionary slot), for the bound."""


class Answer(NamedTuple):
    """One rendered ``/recommend`` answer: the JSON body and whether it is the fallback."""

    body: bytes
    fallback: bool


class Scope(NamedTuple):
    """What a cached answer depends on besides the user's own state."""

    user_id: str
    exclude_seen: bool
    items: np.ndarray
    """Catalog indices of the answer's items, sorted."""
    last_score: float
    """The answer's lowest score; -inf when it holds fewer than ``k`` items."""
    fallback: bool


class _Entry(NamedTuple):
    answer: Answer
    revision: int
    scope: Scope | None
    weight: int


Validator = Callable[[Scope, int], bool]
"""Whether an answer of ``Scope`` rendered at a revision is still what would be rendered now."""


def _always_stale(_scope: Scope, _revision: int) -> bool:
    return False


class ResponseCache:
    """At most ``max_bytes`` of answers (bodies plus :data:`ENTRY_OVERHEAD` each), least
    recently used evicted first; ``still_valid`` judges an answer older than the request's
    revision (by default none is: an answer serves its own revision only)."""

    def __init__(self, max_bytes: int, still_valid: Validator = _always_stale) -> None:
        if max_bytes < 1:
            raise ValueError(f"response cache size must be >= 1 byte, got {max_bytes}")
        self.max_bytes = max_bytes
        self._still_valid = still_valid
        self._bytes = 0
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """The weight of the answers held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, revision: int) -> Answer | None:
        """The answer kept for ``key`` if it is still right at ``revision``, else None.

        An answer rendered at an older revision is checked (and dropped when stale); one
        rendered at a newer revision than the request's is not used.
        """
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.revision > revision:
            return None
        if entry.revision < revision:
            if entry.scope is None or not self._still_valid(entry.scope, entry.revision):
                with self._lock:
                    if self._entries.get(key) is entry:
                        self._drop(key)
                return None
            entry = entry._replace(revision=revision)
        with self._lock:
            if key in self._entries:
                self._entries[key] = entry
                self._entries.move_to_end(key)
        return entry.answer

    def put(self, key: Hashable, revision: int, answer: Answer, scope: Scope | None = None) -> None:
        """Keep ``answer``, rendered at ``revision``, for ``key`` (if it alone fits)."""
        weight = len(answer.body) + ENTRY_OVERHEAD
        if weight > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                if self._entries[key].revision > revision:
                    return
                self._drop(key)
            self._entries[key] = _Entry(answer, revision, scope, weight)
            self._bytes += weight
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.weight

    def _drop(self, key: Hashable) -> None:
        self._bytes -= self._entries.pop(key).weight
