"""Recommender: validation before writes, read-only state under concurrent updates, reloads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bundle import fold_in_user
from service.config import Settings
from service.errors import UnknownItemsError, UnknownUserError
from service.recommender import Recommender, RecommendQuery
from service.store import SQLiteStore
from service.store.base import Event
from tests.service.bundles import random_bundle, write_random_bundle


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
    assert store.seen("1") == set()
    np.testing.assert_array_equal(
        recommender.user_vector("1"), recommender.bundle.user_embeddings[1]
    )


def test_each_fold_in_is_reported_and_items_counted(settings: Settings, store: SQLiteStore) -> None:
    durations: list[float] = []
    recommender = Recommender.load(settings, store, on_finetune=durations.append)

    accepted = recommender.record([event("1", "i1", "i2"), event("1", "i3"), event("x", "i4")])
    recommender.recommend("1", 5)
    recommender.recommend("x", 5)
    recommender.recommend("2", 5)

    assert accepted == 4
    assert len(durations) == 2 and all(seconds >= 0 for seconds in durations)
    assert store.seen("1") == {"i1", "i2", "i3"}


def test_deterministic_updates_cost_one_write_and_store_no_vector(
    recommender: Recommender, store: SQLiteStore
) -> None:
    assert recommender.finetune_method == "propagate"

    recommender.record([event("1", "i1")])

    assert store.get_vector("1", recommender.model_version) is None
    vector = recommender.user_vector("1")
    assert vector is not None and not np.allclose(vector, recommender.bundle.user_embeddings[1])


def test_propagate_folds_in_exactly_as_the_student_propagates(
    recommender: Recommender,
) -> None:
    bundle = recommender.bundle
    assert bundle.user_ego is not None and bundle.item_layers is not None
    degrees = bundle.item_popularity()
    train = bundle.seen_items(3).astype(np.int64)
    np.testing.assert_allclose(
        fold_in_user(bundle.user_ego[3], bundle.item_layers, train, degrees),
        bundle.user_embeddings[3],
        rtol=1e-5,
        atol=1e-6,
    )
    new = [item for item in range(bundle.n_items) if item not in set(train)][:2]

    recommender.record([event("3", *(bundle.item_ids[item] for item in new))])

    expected = fold_in_user(bundle.user_ego[3], bundle.item_layers, np.union1d(train, new), degrees)
    np.testing.assert_allclose(recommender.user_vector("3"), expected, rtol=1e-6)
    newcomer = fold_in_user(
        bundle.user_ego.mean(axis=0), bundle.item_layers, np.asarray(new), degrees
    )
    recommender.record([event("fresh", *(bundle.item_ids[item] for item in new))])
    np.testing.assert_allclose(recommender.user_vector("fresh"), newcomer, rtol=1e-5)


def test_auto_method_depends_on_the_bundle_and_propagate_needs_layers(
    settings: Settings, store: SQLiteStore, tmp_path: Path
) -> None:
    plain = write_random_bundle(tmp_path / "plain", n_layers=None, version="plain-v1")

    assert Recommender.load(settings, store).finetune_method == "propagate"
    assert Recommender.load(settings, store, plain).finetune_method == "mean"
    forced = settings.model_copy(update={"finetune_method": "propagate"})
    with pytest.raises(ValueError, match=r"plain-v1 has no propagation\.npz"):
        Recommender.load(forced, store, plain)


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
        vector = recommender.user_vector(user)
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


def test_mismatched_index_is_refused(recommender: Recommender, settings: Settings) -> None:
    other = random_bundle(n_items=10)

    with pytest.raises(ValueError, match="does not match the bundle"):
        Recommender(other, recommender.index, recommender._store, settings)


@pytest.mark.parametrize("method", ["propagate", "mean"])
def test_deterministic_updates_do_not_pile_up_on_repeated_posts(
    settings: Settings, store: SQLiteStore, method: str
) -> None:
    recommender = Recommender.load(settings.model_copy(update={"finetune_method": method}), store)
    recommender.record([event("1", "i1")])
    first = recommender.user_vector("1")
    recommender.record([event("1", "i1")])
    again = recommender.user_vector("1")
    assert first is not None and again is not None
    np.testing.assert_array_equal(again, first)


def test_finetune_method_setting_reaches_the_update(settings: Settings, tmp_path: Path) -> None:
    vectors = {}
    for method in ("propagate", "mean", "bpr"):
        chosen = settings.model_copy(update={"finetune_method": method})
        own_store = SQLiteStore(tmp_path / f"{method}.sqlite3")
        own = Recommender.load(chosen, own_store)
        own.record([event("1", "i1", "i2")])
        vectors[method] = own.user_vector("1")
        if method == "bpr":
            stored = own_store.get_vector("1", own.model_version)
            assert stored is not None
            np.testing.assert_array_equal(stored, vectors[method])
        own_store.close()
    assert all(vector is not None for vector in vectors.values())
    for first, second in (("propagate", "mean"), ("propagate", "bpr"), ("mean", "bpr")):
        assert not np.allclose(vectors[first], vectors[second])
