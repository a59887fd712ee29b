"""One contract, every store: the SQLite file and a real Redis behave the same."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis

from service.config import Settings
from service.store import RedisStore, SQLiteStore, Store, StoreError, open_store
from service.store.base import Event

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "redis"])
def open_same(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new store object on one location (a file or a key prefix); closes them all."""
    factory: Opener
    if request.param == "sqlite":
        path = tmp_path / "nested" / "dir" / "store.sqlite3"

        def factory() -> Store:
            return SQLiteStore(path)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

        def factory() -> Store:
            return RedisStore(url, prefix)

    opened: list[Store] = []

    def opener() -> Store:
        opened.append(factory())
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_same: Opener) -> Store:
    return open_same()


def event(user: str, *items: str, ts: float = 1.0) -> Event:
    return Event(user_id=user, item_ids=items, timestamp=ts)


class _InjectedFailure(RuntimeError):
    pass


def fail_on_second_write(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Make the store's second event write of an append raise; return the events attempted."""
    write = store._write_event  # type: ignore[attr-defined]
    calls: list[Event] = []

    def fail_on_second(target: object, ev: Event) -> None:
        calls.append(ev)
        if len(calls) == 2:
            raise _InjectedFailure("injected mid-batch failure")
        write(target, ev)

    monkeypatch.setattr(store, "_write_event", fail_on_second)
    return calls


class TestStoreContract:
    def test_is_a_store_that_answers(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert store.ping() is True

    def test_append_then_seen_round_trip(self, store: Store) -> None:
        store.append([event("u1", "a", "b"), event("u2", "c")])
        store.append([event("u1", "d", ts=2.5)])
        assert store.seen("u1") == {"a", "b", "d"}
        assert store.seen("u2") == {"c"}
        assert store.seen("nobody") == set()

    def test_repeated_interactions_are_seen_once(self, store: Store) -> None:
        store.append([event("u1", "a", ts=1.0), event("u1", "a", "b", ts=2.0)])
        assert store.seen("u1") == {"a", "b"}

    def test_empty_batch_writes_nothing(self, store: Store) -> None:
        store.append([])
        assert store.seen("u1") == set()

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            (event("u2"), "item_ids"),
            (event("u2", "x", ts=math.nan), "finite"),
            (event("", "x"), "user_id"),
            (Event(user_id="u2", item_ids=("x", ""), timestamp=1.0), "non-empty strings"),
            ("not an event", "expected an Event"),
        ],
    )
    def test_invalid_event_mid_batch_writes_nothing(
        self, store: Store, bad: object, message: str
    ) -> None:
        batch = [event("u1", "a"), bad, event("u3", "c")]
        with pytest.raises(ValueError, match=message):
            store.append(batch)  # type: ignore[list-item]
        assert store.seen("u1") == set()
        assert store.seen("u3") == set()
        store.append([event("u1", "a")])
        assert store.seen("u1") == {"a"}

    def test_failure_while_writing_rolls_the_batch_back(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure after the first event was written (e.g. the disk or link failing)."""
        calls = fail_on_second_write(store, monkeypatch)
        with pytest.raises(_InjectedFailure):
            store.append([event("u1", "a"), event("u2", "b"), event("u3", "c")])
        assert len(calls) == 2
        assert store.seen("u1") == set()
        assert store.seen("u2") == set()
        monkeypatch.undo()
        store.append([event("u1", "a")])
        assert store.seen("u1") == {"a"}

    def test_vectors_round_trip_per_model_version(self, store: Store) -> None:
        rng = np.random.default_rng(0)
        v1, v2, v3 = (rng.standard_normal(16).astype(np.float32) for _ in range(3))
        store.put_vector("u1", "m1", v1)
        store.put_vector("u1", "m2", v2)
        got = store.get_vector("u1", "m1")
        assert got is not None
        assert got.dtype == np.float32
        assert got.shape == (16,)
        np.testing.assert_array_equal(got, v1)
        np.testing.assert_array_equal(store.get_vector("u1", "m2"), v2)
        assert store.get_vector("u1", "m3") is None
        assert store.get_vector("u2", "m1") is None
        store.put_vector("u1", "m1", v3)
        np.testing.assert_array_equal(store.get_vector("u1", "m1"), v3)
        np.testing.assert_array_equal(store.get_vector("u1", "m2"), v2)

    def test_returned_vector_is_a_writable_copy(self, store: Store) -> None:
        store.put_vector("u1", "m1", np.ones(4, dtype=np.float32))
        got = store.get_vector("u1", "m1")
        assert got is not None
        got += 1.0
        np.testing.assert_array_equal(store.get_vector("u1", "m1"), np.ones(4, np.float32))

    def test_float64_vector_is_stored_as_float32(self, store: Store) -> None:
        vector = np.linspace(-1.0, 1.0, 7) / 3.0
        store.put_vector("u1", "m1", vector)
        got = store.get_vector("u1", "m1")
        assert got is not None
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, vector.astype(np.float32))

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            (np.ones((2, 3), np.float32), "1-D"),
            (np.ones(0, np.float32), "non-empty"),
            (np.array([1.0, np.nan], np.float32), "finite"),
            (np.arange(3), "floating dtype"),
        ],
    )
    def test_bad_vector_is_refused(self, store: Store, bad: np.ndarray, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            store.put_vector("u1", "m1", bad)
        assert store.get_vector("u1", "m1") is None

    def test_concurrent_appends_lose_nothing(self, store: Store) -> None:
        threads, per_thread = 6, 15
        start = threading.Barrier(threads)

        def writer(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                store.append([event(f"u{t % 3}", f"t{t}-{i}"), event(f"own{t}", f"i{i}")])

        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(writer, t) for t in range(threads)]:
                future.result()
        for user in range(3):
            expected = {f"t{t}-{i}" for t in range(user, threads, 3) for i in range(per_thread)}
            assert store.seen(f"u{user}") == expected
        for t in range(threads):
            assert store.seen(f"own{t}") == {f"i{i}" for i in range(per_thread)}

    def test_another_store_object_sees_the_data(self, open_same: Opener) -> None:
        first = open_same()
        first.append([event("u1", "a", "b")])
        first.put_vector("u1", "m1", np.arange(3, dtype=np.float32))
        second = open_same()
        assert second.seen("u1") == {"a", "b"}
        second.append([event("u1", "c")])
        assert first.seen("u1") == {"a", "b", "c"}
        first.close()
        reopened = open_same()
        assert reopened.seen("u1") == {"a", "b", "c"}
        np.testing.assert_array_equal(
            reopened.get_vector("u1", "m1"), np.arange(3, dtype=np.float32)
        )

    def test_events_since_on_an_empty_store(self, store: Store) -> None:
        assert store.events_since(0) == (0, [])

    def test_events_since_follows_appends_in_order(self, store: Store) -> None:
        store.append([event("u1", "a", "b"), event("u2", "a"), event("u1", "a", ts=2.0)])
        store.append([event("u3", "c")])
        revision, pairs = store.events_since(0)
        assert pairs == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u1", "a"), ("u3", "c")]
        assert revision > 0
        assert store.events_since(revision) == (revision, [])
        store.append([event("u2", "d", "a")])
        store.append([event("u1", "b")])
        newer, new_pairs = store.events_since(revision)
        assert new_pairs == [("u2", "d"), ("u2", "a"), ("u1", "b")]
        assert newer > revision
        assert store.events_since(newer) == (newer, [])
        assert store.events_since(0) == (newer, pairs + new_pairs)

    def test_events_since_every_revision_splits_the_log(self, store: Store) -> None:
        """Any revision handed out, passed back, yields exactly the rest of the log."""
        revisions = [store.events_since(0)[0]]
        for i in range(4):
            store.append([event(f"u{i}", f"i{i}", f"j{i}")])
            revisions.append(store.events_since(revisions[-1])[0])
        latest, everything = store.events_since(0)
        assert latest == revisions[-1]
        for step, revision in enumerate(revisions):
            assert store.events_since(revision) == (latest, everything[2 * step :])

    def test_failed_appends_add_nothing_to_the_log(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.append([event("u0", "z")])
        revision, _ = store.events_since(0)
        with pytest.raises(ValueError, match="item_ids"):
            store.append([event("u1", "a"), event("u2"), event("u3", "c")])
        fail_on_second_write(store, monkeypatch)
        with pytest.raises(_InjectedFailure):
            store.append([event("u1", "a"), event("u2", "b"), event("u3", "c")])
        monkeypatch.undo()
        assert store.events_since(revision) == (revision, [])
        store.append([event("u4", "d")])
        assert store.events_since(revision)[1] == [("u4", "d")]
        assert store.events_since(0)[1] == [("u0", "z"), ("u4", "d")]

    def test_events_since_concurrent_appends_stay_whole(self, store: Store) -> None:
        """Every append's pairs are contiguous in the log; nothing is lost or doubled."""
        threads, per_thread = 4, 10
        start = threading.Barrier(threads)

        def writer(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                store.append([event(f"u{t}", f"{i}-a", f"{i}-b", f"{i}-c")])

        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(writer, t) for t in range(threads)]:
                future.result()
        _, pairs = store.events_since(0)
        assert len(pairs) == threads * per_thread * 3
        for start_at in range(0, len(pairs), 3):
            user = pairs[start_at][0]
            batch = pairs[start_at][1].split("-")[0]
            expected = [(user, f"{batch}-{suffix}") for suffix in "abc"]
            assert pairs[start_at : start_at + 3] == expected
        for t in range(threads):
            assert [item for user, item in pairs if user == f"u{t}"] == [
                f"{i}-{suffix}" for i in range(per_thread) for suffix in "abc"
            ]

    def test_events_since_survives_reopening(self, open_same: Opener) -> None:
        first = open_same()
        first.append([event("u1", "a", "b")])
        revision, _ = first.events_since(0)
        first.close()
        second = open_same()
        assert second.events_since(0) == (revision, [("u1", "a"), ("u1", "b")])
        second.append([event("u2", "c")])
        latest, pairs = second.events_since(revision)
        assert pairs == [("u2", "c")]
        second.close()
        assert open_same().events_since(revision) == (latest, [("u2", "c")])

    @pytest.mark.parametrize("bad", [-1, 1.0, "0", None, True])
    def test_events_since_refuses_a_bad_revision(self, store: Store, bad: object) -> None:
        with pytest.raises(ValueError, match="revision"):
            store.events_since(bad)  # type: ignore[arg-type]

    def test_events_since_reads_a_long_tail_in_bounded_steps(self, store: Store) -> None:
        store.append([event("u1", "a", "b", "c"), event("u2", "d", "e")])
        latest, everything = store.events_since(0)
        assert store.latest_revision() == latest

        steps, revision = [], 0
        while True:
            revision, pairs = store.events_since(revision, 2)
            if not pairs:
                break
            steps.append(pairs)
        assert [len(pairs) for pairs in steps] == [2, 2, 1]
        assert [pair for pairs in steps for pair in pairs] == everything
        assert revision == latest
        with pytest.raises(ValueError, match="limit"):
            store.events_since(0, 0)

    def test_latest_revision_of_an_empty_log_is_zero(self, store: Store) -> None:
        assert store.latest_revision() == 0

    def test_a_snapshot_is_replaced_whole_per_model_version(self, open_same: Opener) -> None:
        first = open_same()
        assert first.get_snapshot("m1") is None
        first.put_snapshot("m1", 3, b"old state")
        first.put_snapshot("m1", 7, b"\x00new state")
        first.put_snapshot("m2", 1, b"other")

        second = open_same()
        assert second.get_snapshot("m1") == (7, b"\x00new state")
        assert second.get_snapshot("m2") == (1, b"other")
        with pytest.raises(ValueError, match="revision"):
            second.put_snapshot("m1", -1, b"x")

    def test_events_since_refuses_a_revision_ahead_of_the_store(self, store: Store) -> None:
        with pytest.raises(StoreError, match="ahead"):
            store.events_since(1)
        store.append([event("u1", "a", "b")])
        latest, _ = store.events_since(0)
        with pytest.raises(StoreError, match="ahead"):
            store.events_since(latest + 1)
        assert store.events_since(latest) == (latest, [])

    def test_close_is_idempotent_and_final(self, store: Store) -> None:
        store.close()
        store.close()
        assert store.ping() is False
        with pytest.raises(StoreError, match="closed"):
            store.append([event("u1", "a")])
        with pytest.raises(StoreError, match="closed"):
            store.seen("u1")
        with pytest.raises(StoreError, match="closed"):
            store.events_since(0)


def test_sqlite_keeps_a_timestamped_log_in_a_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite3"
    store = SQLiteStore(path)
    store.append([event("u1", "a", ts=10.5), event("u1", "a", ts=11.0)])
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        rows = conn.execute("SELECT user_id, item_id, ts FROM interactions ORDER BY id").fetchall()
    assert rows == [("u1", "a", 10.5), ("u1", "a", 11.0)]


def test_sqlite_fsyncs_every_commit_in_every_thread(tmp_path: Path) -> None:
    """kill -9 cannot tell synchronous=FULL from OFF (the OS keeps the pages); pin the setting."""
    store = SQLiteStore(tmp_path / "store.sqlite3")
    try:
        with ThreadPoolExecutor(2) as pool:
            levels = list(
                pool.map(
                    lambda _: store._connection().execute("PRAGMA synchronous").fetchone()[0],
                    range(4),
                )
            )
        assert levels == [2] * 4  # 2 == FULL
    finally:
        store.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema v99"):
        SQLiteStore(path)


def test_redis_keeps_a_timestamped_log(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, redis_prefix)
    store.append([event("u1", "a", "b", ts=10.5), event("u2", "c", ts=11.0)])
    store.close()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client.xrange(f"{redis_prefix}:events")
    client.close()
    logged = [(f["user"], json.loads(f["items"]), float(f["ts"])) for _, f in entries]
    assert logged == [("u1", ["a", "b"], 10.5), ("u2", ["c"], 11.0)]


def test_redis_log_is_one_json_pair_per_item(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, redis_prefix)
    store.append([event("u:1", "a,b", '"c"'), event("u2", "d")])
    store.close()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client.lrange(f"{redis_prefix}:log", 0, -1)
    client.close()
    assert [json.loads(entry) for entry in entries] == [
        ["u:1", "a,b"],
        ["u:1", '"c"'],
        ["u2", "d"],
    ]


def test_redis_corrupt_log_entry_is_a_store_error(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, redis_prefix)
    client = redis.Redis.from_url(redis_url)
    client.rpush(f"{redis_prefix}:log", b'["u1"]')
    client.close()
    try:
        with pytest.raises(StoreError, match="corrupt"):
            store.events_since(0)
    finally:
        store.close()


def test_redis_down_events_since_is_a_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", "promptmm-test-down")
    with pytest.raises(StoreError, match="unreachable"):
        store.events_since(0)
    store.close()


def test_redis_down_is_a_store_error_and_ping_false() -> None:
    store = RedisStore("redis://:secret@127.0.0.1:1/0", "promptmm-test-down")
    assert store.ping() is False
    with pytest.raises(StoreError, match="unreachable") as info:
        store.append([event("u1", "a")])
    assert "secret" not in str(info.value)
    with pytest.raises(StoreError, match="unreachable"):
        store.get_vector("u1", "m1")
    store.close()


def test_redis_refuses_a_bad_url() -> None:
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisStore("http://127.0.0.1:6379", "p")


def test_open_store_picks_sqlite_without_redis_url(tmp_path: Path) -> None:
    path = tmp_path / "data" / "x.sqlite3"
    settings = Settings(allow_open_writes=True, store_path=path, REDIS_URL=None)
    store = open_store(settings)
    try:
        assert isinstance(store, SQLiteStore)
        assert path.parent.is_dir()
    finally:
        store.close()


def test_open_store_picks_redis_with_redis_url(redis_url: str, redis_prefix: str) -> None:
    settings = Settings(allow_open_writes=True, REDIS_URL=redis_url, redis_prefix=redis_prefix)
    store = open_store(settings)
    try:
        assert isinstance(store, RedisStore)
        assert store.prefix == redis_prefix
        assert store.ping() is True
    finally:
        store.close()
