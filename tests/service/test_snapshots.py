"""Snapshots of the online state: a restart loads the newest one and replays only the tail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service import worker
from service.config import Settings
from service.recommender import Recommender
from service.store import RedisStore, SQLiteStore, Store
from service.store.base import Event


@pytest.fixture(autouse=True)
def snapshots_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests take their snapshots themselves: the worker's own (after a quiet period, which a
    slow machine can reach between two writes) would move the revision they restore from."""
    monkeypatch.setattr(worker, "SNAPSHOT_EVERY_S", float("inf"))
    monkeypatch.setattr(worker, "SNAPSHOT_EVERY_PAIRS", 10**12)


@pytest.fixture(params=["sqlite", "redis"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "store.sqlite3")
    else:
        opened = RedisStore(
            request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    yield opened
    opened.close()


def random_events(seed: int, n: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    users = [*map(str, range(12)), "new-a", "new-b"]
    return [
        Event(
            str(rng.choice(users)),
            tuple(f"i{item}" for item in rng.choice(80, size=int(rng.integers(1, 9)))),
            float(n),
        )
        for n in range(n)
    ]


def online_of(
    recommender: Recommender,
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], np.ndarray]:
    recommender.sync()
    users = recommender._online.users
    vectors = {user: view.vector for user, view in users.items() if view.vector is not None}
    excludes = {user: view.exclude.tolist() for user, view in users.items()}
    return vectors, excludes, recommender.item_vectors()


class Reads:
    """Records the revisions ``events_since`` is asked for."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.revisions: list[int] = []
        read = store.events_since

        def spy(revision: int, limit: int | None = None) -> tuple[int, list[tuple[str, str]]]:
            self.revisions.append(revision)
            return read(revision, limit)

        monkeypatch.setattr(store, "events_since", spy)


def test_snapshot_and_tail_replay_equal_a_full_replay(
    settings: Settings, shared_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = random_events(0, 60)
    first = Recommender.load(settings, shared_store)
    for event in events[:40]:
        first.record([event])
    taken = first.snapshot()
    for event in events[40:]:
        first.record([event])
    first.close()
    assert shared_store.get_snapshot(first.model_version) is not None

    reads = Reads(shared_store, monkeypatch)
    restored = Recommender.load(settings, shared_store)
    assert reads.revisions[0] == taken > 0
    monkeypatch.setattr(shared_store, "get_snapshot", lambda _version: None)
    replayed = Recommender.load(settings, shared_store)

    restored_vectors, restored_excludes, restored_items = online_of(restored)
    full_vectors, full_excludes, full_items = online_of(replayed)
    assert restored_excludes == full_excludes
    assert restored_vectors.keys() == full_vectors.keys()
    for user, vector in full_vectors.items():
        np.testing.assert_allclose(restored_vectors[user], vector, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(restored_items, full_items, rtol=1e-6, atol=1e-7)
    queries = [str(user) for user in range(12)] + ["new-a", "new-b"]
    for user in queries:
        ours = restored.recommend(user, 10)
        theirs = replayed.recommend(user, 10)
        assert [item for item, _ in ours.items] == [item for item, _ in theirs.items]


@pytest.mark.parametrize("method", ["mean", "bpr"])
def test_other_methods_restore_their_state_too(
    settings: Settings, store: SQLiteStore, method: str
) -> None:
    chosen = settings.model_copy(update={"finetune_method": method})
    first = Recommender.load(chosen, store)
    for event in random_events(1, 20):
        first.record([event])
    first.snapshot()
    first.close()
    _, first_excludes, _ = online_of(first)

    restored = Recommender.load(chosen, store)

    _, excludes, _ = online_of(restored)
    assert excludes == first_excludes
    for user in ("new-a", "3"):
        assert restored.user_vector(user) is not None
        np.testing.assert_allclose(
            restored.user_vector(user),  # type: ignore[arg-type]
            first.user_vector(user),  # type: ignore[arg-type]
            rtol=1e-6,
        )


def test_a_corrupt_or_foreign_snapshot_is_ignored(
    settings: Settings, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    first = Recommender.load(settings, store)
    first.record(random_events(2, 10))
    expected = online_of(first)[2]
    first.close()
    store.put_snapshot(first.model_version, 3, b"not an npz")

    restored = Recommender.load(settings, store)

    assert "ignoring the online-state snapshot" in caplog.text
    np.testing.assert_allclose(online_of(restored)[2], expected, rtol=1e-6)
    mean = Recommender.load(settings.model_copy(update={"finetune_method": "mean"}), store)
    mean.snapshot()
    assert Recommender.load(settings, store).user_vector("new-a") is not None
    assert "for (1, 'test-v1', 'mean')" in caplog.text


def test_a_snapshot_ahead_of_the_log_is_ignored(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old_store = SQLiteStore(tmp_path / "old.sqlite3")
    first = Recommender.load(settings, old_store)
    first.record(random_events(3, 10))
    first.sync()
    taken = first.snapshot()
    first.close()
    revision, state = old_store.get_snapshot(first.model_version) or (0, b"")
    assert revision == taken > 0
    old_store.close()
    reset = SQLiteStore(tmp_path / "reset.sqlite3")
    reset.put_snapshot(first.model_version, revision, state)

    restored = Recommender.load(settings, reset)

    assert "the log is shorter" in caplog.text
    assert restored._online.users == {}
    reset.close()


@pytest.mark.parametrize("by", ["quiet period", "pairs"])
def test_the_worker_snapshots_by_itself(
    settings: Settings, shared_store: Store, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    if by == "quiet period":
        monkeypatch.setattr(worker, "SNAPSHOT_EVERY_S", 0.05)
    else:
        monkeypatch.setattr(worker, "SNAPSHOT_EVERY_PAIRS", 5)
    recommender = Recommender.load(settings, shared_store)
    try:
        for event in random_events(1, 8):
            recommender.record([event])
        written = shared_store.latest_revision()
        deadline = time.monotonic() + 30
        snapshot = shared_store.get_snapshot(recommender.model_version)
        while (snapshot is None or snapshot[0] < 5) and time.monotonic() < deadline:
            time.sleep(0.05)
            snapshot = shared_store.get_snapshot(recommender.model_version)
    finally:
        recommender.close()
    assert snapshot is not None, f"no snapshot within 30 s ({by})"
    assert 5 <= snapshot[0] <= written
