"""SQLiteStore group commit: writes queued behind a commit share one transaction.

The test holds the store's commit lock, so the writer threads queue up behind it; once it is
released, the first thread commits every queued write in one transaction and the others find
theirs done. Each write still succeeds or fails on its own.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.store.base import Event, StoreError
from service.store.sqlite import SQLiteStore

QUEUE_WAIT_S = 10.0


class _InjectedFailure(RuntimeError):
    pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.sqlite3")
    yield opened
    opened.close()


def _queued_together(
    store: SQLiteStore, writes: list[Callable[[], None]]
) -> tuple[list[Future[None]], list[int]]:
    """Run ``writes`` in threads while the commit lock is held; return them and batch sizes."""
    batches: list[int] = []
    commit = store._commit_batch

    def recording_commit(batch: list) -> None:  # type: ignore[type-arg]
        batches.append(len(batch))
        commit(batch)

    store._commit_batch = recording_commit  # type: ignore[method-assign]
    with ThreadPoolExecutor(len(writes)) as pool:
        with store._commit_lock:
            futures = [pool.submit(write) for write in writes]
            deadline = time.monotonic() + QUEUE_WAIT_S
            while len(store._queue) < len(writes):
                assert time.monotonic() < deadline, "writers did not queue up"
                time.sleep(0.001)
        for future in futures:
            future.exception(timeout=QUEUE_WAIT_S)
    return futures, batches


def test_queued_writes_commit_in_one_transaction(store: SQLiteStore) -> None:
    vector = np.arange(8, dtype=np.float32)
    writes: list[Callable[[], None]] = [
        lambda: store.append([Event("u1", ("a", "b"), 1.0)]),
        lambda: store.append([Event("u2", ("c",), 2.0)]),
        lambda: store.put_vector("u1", "v1", vector),
    ]
    futures, batches = _queued_together(store, writes)
    assert [future.exception() for future in futures] == [None, None, None]
    assert batches == [3]
    assert store.seen("u1") == {"a", "b"}
    assert store.seen("u2") == {"c"}
    stored = store.get_vector("u1", "v1")
    assert stored is not None
    np.testing.assert_array_equal(stored, vector)


def test_a_failing_write_rolls_back_alone(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_event = store._write_event
    failed = threading.Event()

    def fail_for_bad(conn: object, event: Event) -> None:
        if event.user_id == "bad" and len(event.item_ids) == 1:
            failed.set()
            raise _InjectedFailure("injected failure of user 'bad'")
        write_event(conn, event)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_write_event", fail_for_bad)
    writes: list[Callable[[], None]] = [
        lambda: store.append([Event("good1", ("a",), 1.0)]),
        lambda: store.append([Event("bad", ("x", "y"), 2.0), Event("bad", ("z",), 3.0)]),
        lambda: store.append([Event("good2", ("b",), 4.0)]),
    ]
    futures, batches = _queued_together(store, writes)
    assert failed.is_set()
    assert batches == [3]
    assert futures[0].exception() is None
    assert isinstance(futures[1].exception(), _InjectedFailure)
    assert futures[2].exception() is None
    assert store.seen("good1") == {"a"}
    assert store.seen("good2") == {"b"}
    assert store.seen("bad") == set(), "the failed append's first event was rolled back"


def test_a_write_that_cannot_commit_names_its_action(store: SQLiteStore) -> None:
    store.close()
    with pytest.raises(StoreError, match=r"cannot append: .*closed"):
        store.append([Event("u1", ("a",), 1.0)])
    with pytest.raises(StoreError, match=r"cannot write a user vector: .*closed"):
        store.put_vector("u1", "v1", np.ones(4, dtype=np.float32))


def test_writers_of_other_processes_wait_on_the_lock_file(store: SQLiteStore) -> None:
    """A writer lock held elsewhere (another open file description: another process) holds
    back the commit, which then goes through as soon as the lock is released."""
    with (
        open(f"{store.path}.lock", "ab") as elsewhere,
        ThreadPoolExecutor(1) as pool,
    ):
        fcntl.flock(elsewhere.fileno(), fcntl.LOCK_EX)
        pending = pool.submit(store.append, [Event("u", ("a",), 1.0)])
        time.sleep(0.3)
        assert not pending.done()
        fcntl.flock(elsewhere.fileno(), fcntl.LOCK_UN)
        pending.result(timeout=QUEUE_WAIT_S)
    assert store.seen("u") == {"a"}
