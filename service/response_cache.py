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
from typing import NamedTuple

ENTRY_OVERHEAD = 200
"""Bytes an answer costs beyond its body (key, tuples, dictionary slot), for the bound."""


class Answer(NamedTuple):
    """One rendered ``/recommend`` answer: the JSON body and whether it is the fallback."""

    body: bytes
    fallback: bool


class ResponseCache:
    """Answers of the newest log revision seen, at most ``max_bytes`` of them (bodies plus
    :data:`ENTRY_OVERHEAD` each), least recently used evicted first."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"response cache size must be >= 1 byte, got {max_bytes}")
        self.max_bytes = max_bytes
        self._bytes = 0
        self._revision = -1
        self._entries: OrderedDict[Hashable, tuple[Answer, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """The weight of the answers held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, revision: int) -> Answer | None:
        """The answer rendered for ``key`` at ``revision``, or None.

        A ``revision`` newer than the cache's empties it first; an older one (a request
        that read the log before another's newer read) finds nothing and changes nothing.
        """
        with self._lock:
            if revision != self._revision:
                if revision > self._revision:
                    self._entries.clear()
                    self._bytes = 0
                    self._revision = revision
                return None
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, revision: int, answer: Answer) -> None:
        """Keep ``answer`` for ``key`` if ``revision`` is still the newest one seen (and the
        answer alone fits)."""
        weight = len(answer.body) + ENTRY_OVERHEAD
        with self._lock:
            if revision != self._revision or weight > self.max_bytes:
                return
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1]
            self._entries[key] = (answer, weight)
            self._bytes += weight
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
