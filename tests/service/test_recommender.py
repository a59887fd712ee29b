"""Recommender: validation before writes, read-only state under concurrent updates, reloads."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings, load_settings
from service.errors import UnknownItemsError, UnknownUserError
from service.recommender import Recommender, RecommendQuery
from service.store import SQLiteStore
from service.store.base import Event
from tests.service.bundles import random_bundle, write_random_bundle


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    write_random_bundle(tmp_path / "models")
    return load_settings(
        bundle_path=tmp_path / "models", allow_open_writes=True, api_key=None, REDIS_URL=None
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.sqlite3")
    yield opened
    opened.close()


@pytest.fixture
def recommender(settings: Settings, store: SQLiteStore) -> Recommender:
    return Recommender.load(settings, store)


def event(user: str, *items: str) -> Event:
    return Event(user_id=user, item_ids=items, timestamp=1.0)


def test_record_checks_every_event_before_writing_any(
    recommender: Recommender, store: SQLiteStore
) -> None:
    events = [event("1", "i1"), event("2", "i2", "zz"), event("3", "yy", "i3", "xx")]

    with pytest.raises(UnknownItemsError) as raised:
        recommender.record(events)

    assert raised.value.unknown == {1: ["zz"], 2: ["yy", "xx"]}
    assert store.seen("1") == set() and store.get_vector("1", "test-v1") is None


def test_record_reports_each_fine_tune_and_counts_items(
    settings: Settings, store: SQLiteStore
) -> None:
    durations: list[float] = []
    recommender = Recommender.load(settings, store, on_finetune=durations.append)

    accepted = recommender.record([event("1", "i1", "i2"), event("1", "i3"), event("x", "i4")])

    assert accepted == 4
    assert len(durations) == 2 and all(seconds >= 0 for seconds in durations)
    assert store.seen("1") == {"i1", "i2", "i3"}


def test_concurrent_updates_leave_items_and_index_untouched(
    recommender: Recommender, store: SQLiteStore
) -> None:
    items_before = recommender.bundle.item_embeddings.copy()
    queries = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    no_exclusions = [np.empty(0, dtype=np.int64)] * 5
    search_before = recommender.index.search(queries, 10, no_exclusions)
    posted = {user: {f"i{(7 * n + int(user)) % 80}" for n in range(12)} for user in "0123"}

    def writer(user: str) -> None:
        for item in sorted(posted[user]):
            recommender.record([event(user, item)])
            recommender.recommend(user, 5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(writer, [*"0123", *"0123"]))

    assert np.array_equal(recommender.bundle.item_embeddings, items_before)
    search_after = recommender.index.search(queries, 10, no_exclusions)
    assert np.array_equal(search_after.items, search_before.items)
    for user in "0123":
        assert store.seen(user) == posted[user]
        vector = store.get_vector(user, "test-v1")
        assert vector is not None and np.isfinite(vector).all()


def test_model_arrays_are_read_only(recommender: Recommender) -> None:
    with pytest.raises(ValueError, match="read-only"):
        recommender._items[0, 0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        recommender._users[0, 0] = 0.0


def test_unknown_user_raises_when_configured(settings: Settings, store: SQLiteStore) -> None:
    strict = Recommender.load(settings.model_copy(update={"unknown_user": "404"}), store)

    with pytest.raises(UnknownUserError, match="stranger"):
        strict.recommend_many([RecommendQuery("1", 3), RecommendQuery("stranger", 3)])


def test_stored_items_missing_from_a_new_version_are_ignored(
    settings: Settings, store: SQLiteStore, tmp_path: Path
) -> None:
    Recommender.load(settings, store).record([event("new", "i79", "i78")])
    smaller = write_random_bundle(tmp_path / "v2", n_items=79, seed=2, version="test-v2")

    result = Recommender.load(settings, store, smaller).recommend("new", 79)

    assert result.fallback is None
    assert len(result.items) == 78
    assert "i78" not in {item for item, _ in result.items}
    assert store.get_vector("new", "test-v2") is not None


def test_mismatched_index_is_refused(recommender: Recommender, settings: Settings) -> None:
    other = random_bundle(n_items=10)

    with pytest.raises(ValueError, match="does not match the bundle"):
        Recommender(other, recommender.index, recommender._store, settings)


def test_mean_update_restarts_from_the_bundle_so_repeated_posts_do_not_pile_up(
    recommender: Recommender, store: SQLiteStore
) -> None:
    recommender.record([event("1", "i1")])
    first = store.get_vector("1", recommender.model_version)
    recommender.record([event("1", "i1")])
    again = store.get_vector("1", recommender.model_version)
    assert first is not None and again is not None
    np.testing.assert_array_equal(again, first)


def test_finetune_method_setting_reaches_the_update(settings: Settings, tmp_path: Path) -> None:
    vectors = {}
    for method in ("mean", "bpr"):
        chosen = settings.model_copy(update={"finetune_method": method})
        own_store = SQLiteStore(tmp_path / f"{method}.sqlite3")
        own = Recommender.load(chosen, own_store)
        own.record([event("1", "i1", "i2")])
        vectors[method] = own_store.get_vector("1", own.model_version)
        own_store.close()
    assert vectors["mean"] is not None and vectors["bpr"] is not None
    assert not np.allclose(vectors["mean"], vectors["bpr"])
