"""The background work of one served model: tailing the log, compaction, snapshots.

:class:`OnlineWorker` runs one daemon thread that applies the log's tail to the
:class:`~service.online.OnlineState` in chunks of :data:`CHUNK_PAIRS` (so a request catching up
never waits long for its turn), and a second, short-lived one that rebuilds the item index
over the served vectors once enough items moved (:data:`COMPACT_AFTER`) or some waited
(:data:`COMPACT_EVERY_S`), then swaps it in. Every :data:`SNAPSHOT_EVERY_PAIRS` applied pairs,
or :data:`SNAPSHOT_EVERY_S` after the last change, it checkpoints the derived state with the
revision it reflects (:meth:`~service.store.base.Store.put_snapshot`), so a restart replays
only the newer tail. Requests only read the views these threads swap in.

It wakes when this process records a write (:meth:`OnlineWorker.wake`) and polls every
:data:`POLL_S` for the writes of other processes (replicas on one Redis, workers on one
SQLite file).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from service.index import ItemIndex
from service.online import OnlineState
from service.store.base import Store, StoreClosedError, StoreError

logger = logging.getLogger(__name__)

CHUNK_PAIRS = 256
"""Log pairs applied per turn of the lock."""
POLL_S = 0.05
"""Longest wait for writes of other processes."""
COMPACT_AFTER = 64
"""Moved items scored beside the index before it is rebuilt with them."""
COMPACT_EVERY_S = 1.0
"""Longest wait, in seconds, before moved items are rebuilt into the index."""
SNAPSHOT_EVERY_PAIRS = 20_000
SNAPSHOT_EVERY_S = 5.0
STOP_WAIT_S = 10.0
"""Longest :meth:`OnlineWorker.stop` waits for the current turn (a chunk of the log)."""
ERROR_BACKOFF_S = 1.0


class OnlineWorker:
    """Keeps ``state`` following ``store`` in the background (see the module)."""

    def __init__(
        self,
        state: OnlineState,
        store: Store,
        build_index: Callable[[np.ndarray], ItemIndex],
        snapshot: Callable[[], tuple[int, bytes]] | None,
        model_version: str,
        snapshot_revision: int = 0,
    ) -> None:
        """``snapshot_revision``: the revision of the newest snapshot in the store."""
        self._state = state
        self._store = store
        self._build_index = build_index
        self._snapshot = snapshot
        self._model_version = model_version
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._compacting = threading.Lock()
        self._compacted_at = time.monotonic()
        self._snapshot_revision = snapshot_revision
        self._changed_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="online-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look at the log now (a write was just recorded)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the current turn and wait for it (at most ``STOP_WAIT_S``), so that the
        caller may close the store next: closing a connection the worker is reading from
        crashed the process (SQLite)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_WAIT_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                before = self._state.revision
                done = self._state.catch_up(self._store, CHUNK_PAIRS, -1)
                if self._state.revision != before:
                    self._changed_at = time.monotonic()
                self._maybe_compact()
                self._maybe_snapshot()
            except StoreClosedError:
                return
            except StoreError as exc:
                logger.warning("online state: cannot follow the log: %s", exc)
                self._stop.wait(ERROR_BACKOFF_S)
                continue
            except Exception:  # a bug must not stop the state from following the log
                logger.exception("online state: applying the log failed; retrying")
                self._stop.wait(ERROR_BACKOFF_S)
                continue
            if done:
                self._wake.wait(POLL_S)
                self._wake.clear()
            else:
                time.sleep(0)  # between chunks of a long tail, let requests have the GIL

    def _maybe_compact(self) -> None:
        pending = self._state.items.pending.size
        waited = time.monotonic() - self._compacted_at
        due = pending > COMPACT_AFTER or (pending > 0 and waited >= COMPACT_EVERY_S)
        if due and self._compacting.acquire(blocking=False):
            threading.Thread(target=self._compact, name="online-compaction", daemon=True).start()

    def _compact(self) -> None:
        """Rebuild the index over the served vectors and swap it in (own thread)."""
        try:
            with self._state.lock:
                served, revision = self._state.served_vectors()
            started = time.perf_counter()
            index = self._build_index(served)
            with self._state.lock:
                self._state.swap_index(index, revision)
            logger.debug(
                "online state: index rebuilt at revision %d in %.1f ms",
                revision,
                (time.perf_counter() - started) * 1e3,
            )
        finally:
            self._compacted_at = time.monotonic()
            self._compacting.release()

    def _maybe_snapshot(self) -> None:
        if self._snapshot is None:
            return
        behind = self._state.revision - self._snapshot_revision
        quiet = time.monotonic() - self._changed_at >= SNAPSHOT_EVERY_S
        if behind >= SNAPSHOT_EVERY_PAIRS or (behind > 0 and quiet):
            self.write_snapshot()

    def write_snapshot(self) -> int:
        """Checkpoint the state now; return the revision it reflects."""
        assert self._snapshot is not None
        revision, state = self._snapshot()
        self._store.put_snapshot(self._model_version, revision, state)
        self._snapshot_revision = revision
        logger.info(
            "online state: snapshot of %s at revision %d (%d bytes)",
            self._model_version,
            revision,
            len(state),
        )
        return revision
