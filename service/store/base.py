"""The store protocol: where interactions posted online and fine-tuned user vectors live.

Two implementations: ``SQLiteStore`` (embedded, one process, WAL, the default) and
``RedisStore`` (shared by replicas, chosen when ``REDIS_URL`` is set). Ids are the external
string ids of the bundle's ``ids.json``, so stored data survives a bundle reload.

Both keep an append-order log of every (user, item) pair, read with
:meth:`Store.events_since` from a revision: an integer >= 0 (0 is "before anything") that grows
with each append. A follower keeps the revision it was last given and passes it back to learn
only what was appended since; every reader of one store sees the same pairs in the same order.
A revision the store has not reached (its log was reset or it is another store) raises
:class:`StoreError`, and the follower starts again from 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Event:
    """One ``POST /interactions`` event: a user interacted with some items at a time."""

    user_id: str
    item_ids: tuple[str, ...]
    timestamp: float


class StoreError(RuntimeError):
    """The store is unreachable or refused an operation."""


class StoreClosedError(StoreError):
    """The store was closed by its owner: nothing more can be read or written through it."""


@runtime_checkable
class Store(Protocol):
    def append(self, events: Sequence[Event]) -> None:
        """Durably record every event, all or none, before returning."""

    def seen(self, user_id: str) -> set[str]:
        """Every item id recorded for ``user_id`` through :meth:`append`."""

    def events_since(
        self, revision: int, limit: int | None = None
    ) -> tuple[int, list[tuple[str, str]]]:
        """The (user_id, item_id) pairs appended after ``revision``, in order, and the revision
        that follows the last one returned.

        Revisions are integers >= 0 that grow with each append; 0 is "before anything". Passing
        the returned revision back returns only what was appended in between (nothing: an empty
        list and the same revision). ``limit`` returns at most that many pairs (the oldest),
        so a follower reads a long tail in bounded steps. Repeated interactions appear once
        per append. A negative or non-integer ``revision`` or a ``limit`` below 1 raises
        ``ValueError``; a revision ahead of the store's latest raises :class:`StoreError`
        (start again from 0).
        """

    def latest_revision(self) -> int:
        """The revision after the last append (0 for an empty log): one cheap read."""

    def put_snapshot(self, model_version: str, revision: int, state: bytes) -> None:
        """Replace the online-state snapshot of ``model_version`` (reflecting the log up to
        ``revision``) atomically: a reader sees the old one or the new one, whole."""

    def get_snapshot(self, model_version: str) -> tuple[int, bytes] | None:
        """The newest snapshot of ``model_version``: its revision and state, or None."""

    def get_vector(self, user_id: str, model_version: str) -> np.ndarray | None:
        """The fine-tuned vector of ``user_id`` for ``model_version``, if one was stored."""

    def put_vector(self, user_id: str, model_version: str, vector: np.ndarray) -> None:
        """Store the fine-tuned float32 vector of ``user_id`` for ``model_version``."""

    def ping(self) -> bool:
        """True when the backing store answers."""

    def close(self) -> None:
        """Release connections."""


def check_event(event: object) -> Event:
    """Return ``event`` when it is a well-formed :class:`Event`, else raise ``ValueError``.

    Stores call this on each event inside the append transaction, so one bad event in a
    batch rolls the whole batch back.
    """
    if not isinstance(event, Event):
        raise ValueError(f"expected an Event, got {type(event).__name__}")
    if not isinstance(event.user_id, str) or not event.user_id:
        raise ValueError(f"Event.user_id must be a non-empty string, got {event.user_id!r}")
    if not isinstance(event.item_ids, tuple) or not event.item_ids:
        raise ValueError(
            f"Event.item_ids of user {event.user_id!r} must be a non-empty tuple of strings, "
            f"got {event.item_ids!r}"
        )
    bad = [item for item in event.item_ids if not isinstance(item, str) or not item]
    if bad:
        raise ValueError(
            f"Event.item_ids of user {event.user_id!r} must be non-empty strings; bad: {bad!r}"
        )
    timestamp = event.timestamp
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise ValueError(f"Event.timestamp must be a number, got {timestamp!r}")
    if not math.isfinite(timestamp):
        raise ValueError(f"Event.timestamp must be finite, got {timestamp!r}")
    return event


def check_revision(revision: object) -> int:
    """Return ``revision`` when it is an integer >= 0 (not a bool), else raise ``ValueError``."""
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise ValueError(f"revision must be an integer >= 0, got {revision!r}")
    return revision


def check_limit(limit: object) -> int | None:
    """Return ``limit`` when it is None or an integer >= 1 (not a bool), else raise."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
    return limit


def ahead_of_store(revision: int, latest: int, store: str) -> StoreError:
    """The error for a ``revision`` past the ``latest`` one of ``store``: the caller restarts."""
    return StoreError(
        f"revision {revision} is ahead of {store} (latest revision {latest}): its log was "
        "reset or belongs to another store; read again from revision 0"
    )


def vector_to_bytes(vector: np.ndarray) -> bytes:
    """Little-endian float32 bytes of a 1-D, non-empty, finite real vector."""
    array = np.asarray(vector)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"a user vector must be 1-D and non-empty, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"a user vector must have a floating dtype, got {array.dtype}")
    out = array.astype("<f4")
    if not np.isfinite(out).all():
        raise ValueError("a user vector must be finite as float32 (found NaN or inf)")
    return out.tobytes()


def vector_from_bytes(blob: bytes) -> np.ndarray:
    """The writable native float32 vector stored as :func:`vector_to_bytes` wrote it."""
    if len(blob) == 0 or len(blob) % 4:
        raise StoreError(f"stored user vector is corrupt: {len(blob)} bytes, not a float32 array")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)
