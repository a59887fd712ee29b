"""Rendered ``/recommend`` answers of one interaction-log revision, least recently used out.

An answer is a pure function of the served bundle and the interaction log when the user
update is deterministic (``propagate``, ``mean``): the user's vector is folded from the log,
the item overlay is re-propagated from it, the excluded items are read from it. So an answer
rendered at log revision ``r`` stays exact until the log moves past ``r``, on any replica,
since every replica reads the same log. The cache is tagged with the newest revision it was
asked about; a request that sees a newer one empties it (one interaction anywhere changes the
overlaid items' vectors, and with them anyone's ranking). A cache lives as long as its
:class:`~service.recommender.Recommender`, so a reload starts an empty one.

Thread-safe: the Redis path answers in the thread pool.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ResponseCache(Generic[T]):
    """At most ``capacity`` rendered answers of the newest log revision seen."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"response cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._revision = -1
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, revision: int) -> T | None:
        """The answer rendered for ``key`` at ``revision``, or None.

        A ``revision`` newer than the cache's empties it first; an older one (a request
        that read the log before another's newer read) finds nothing and changes nothing.
        """
        with self._lock:
            if revision != self._revision:
                if revision > self._revision:
                    self._entries.clear()
                    self._revision = revision
                return None
            body = self._entries.get(key)
            if body is not None:
                self._entries.move_to_end(key)
            return body

    def put(self, key: Hashable, revision: int, body: T) -> None:
        """Keep ``body`` for ``key`` if ``revision`` is still the newest one seen."""
        with self._lock:
            if revision != self._revision:
                return
            self._entries[key] = body
            self._entries.move_to_end(key)
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
