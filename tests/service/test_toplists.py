"""TopLists: precomputed per-user lists answer exactly as a live search does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service import toplists
from service.config import Settings, load_settings
from service.index import build_index
from service.recommender import Recommender, RecommendQuery
from service.store import SQLiteStore
from service.store.base import Event
from service.toplists import TopLists
from tests.service.bundles import random_bundle, write_random_bundle
from tests.service.test_index import brute_force

SETTINGS = load_settings(allow_open_writes=True)


def test_top_equals_brute_force_without_the_hidden_items() -> None:
    bundle = random_bundle(n_users=40, n_items=60, seed=3)
    index = build_index(bundle.item_embeddings, "exact", SETTINGS)
    lists = TopLists(
        index, bundle.user_embeddings, bundle.train_indptr, bundle.train_indices, depth=15
    )
    rng = np.random.default_rng(0)
    answered = 0
    for row in range(bundle.n_users):
        hidden = np.sort(rng.choice(bundle.n_items, size=int(rng.integers(0, 8)), replace=False))
        found = lists.top(row, 10, hidden.astype(np.int64))
        exclude = np.union1d(bundle.seen_items(row), hidden)
        scores, items = brute_force(
            bundle.item_embeddings, bundle.user_embeddings[row], 10, exclude
        )
        if found is None:
            in_list = np.isin(lists.entries(row)[0], hidden).sum()
            assert 15 - in_list < 10, f"user {row}: a list with enough entries was refused"
            continue
        answered += 1
        np.testing.assert_array_equal(found[1], items)
        np.testing.assert_allclose(found[0], scores, rtol=0, atol=1e-12)
    assert answered > 30


def test_top_refuses_when_the_hidden_items_leave_too_few() -> None:
    bundle = random_bundle(n_users=5, n_items=60, seed=1)
    index = build_index(bundle.item_embeddings, "exact", SETTINGS)
    lists = TopLists(
        index, bundle.user_embeddings, bundle.train_indptr, bundle.train_indices, depth=6
    )
    listed = np.sort(lists.entries(0)[0].astype(np.int64))

    assert lists.top(0, 6, np.empty(0, dtype=np.int64)) is not None
    assert lists.top(0, 5, listed[:1]) is not None
    assert lists.top(0, 6, listed[:1]) is None
    assert lists.top(0, 7, np.empty(0, dtype=np.int64)) is None


def test_a_complete_list_answers_fewer_than_k_when_the_catalog_runs_out() -> None:
    bundle = random_bundle(n_users=4, n_items=12, seed=2, items_per_user=(2, 4))
    index = build_index(bundle.item_embeddings, "exact", SETTINGS)
    lists = TopLists(
        index, bundle.user_embeddings, bundle.train_indptr, bundle.train_indices, depth=50
    )
    seen = bundle.seen_items(0)
    hidden = np.setdiff1d(np.arange(12), seen)[:3].astype(np.int64)

    found = lists.top(0, 20, hidden)

    assert lists.depth == 12
    assert found is not None
    assert sorted(found[1].tolist()) == sorted(set(range(12)) - set(seen.tolist()) - set(hidden))


def test_lists_are_computed_on_first_use_and_the_least_recent_dropped() -> None:
    bundle = random_bundle(n_users=30, n_items=50, seed=5)
    index = build_index(bundle.item_embeddings, "exact", SETTINGS)
    lists = TopLists(
        index,
        bundle.user_embeddings,
        bundle.train_indptr,
        bundle.train_indices,
        depth=10,
        cache_users=4,
    )
    assert len(lists) == 0, "30 users do not fit a cache of 4: nothing is computed at load"
    first = lists.entries(0)
    for row in range(1, 30):
        lists.entries(row)
        assert len(lists) == min(row + 1, 4)

    again = lists.entries(0)

    assert again is not first, "user 0 was dropped after 29 newer users and computed again"
    np.testing.assert_array_equal(again[0], first[0])
    assert lists.entries(0) is again, "a kept list is not computed twice"
    scores, items = brute_force(
        bundle.item_embeddings, bundle.user_embeddings[0], 10, bundle.seen_items(0)
    )
    np.testing.assert_array_equal(again[0], items)
    np.testing.assert_allclose(again[1], scores, rtol=0, atol=1e-12)


def test_a_small_bundles_lists_are_all_computed_at_load_as_they_would_be_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = random_bundle(n_users=30, n_items=50, seed=6)
    index = build_index(bundle.item_embeddings, "exact", SETTINGS)
    args = (index, bundle.user_embeddings, bundle.train_indptr, bundle.train_indices, 10)
    eager = TopLists(*args)
    monkeypatch.setattr(toplists, "EAGER_MAX_SCORES", 30 * 50 - 1)
    lazy = TopLists(*args)

    assert len(eager) == 30 and len(lazy) == 0
    for row in range(30):
        np.testing.assert_array_equal(eager.entries(row)[0], lazy.entries(row)[0])
        np.testing.assert_allclose(eager.entries(row)[1], lazy.entries(row)[1], rtol=0, atol=1e-12)


def test_depth_must_be_positive() -> None:
    bundle = random_bundle(n_users=3, n_items=10)
    index = build_index(bundle.item_embeddings, "exact", SETTINGS)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        TopLists(index, bundle.user_embeddings, bundle.train_indptr, bundle.train_indices, 0)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_recommender_answers_the_same_with_and_without_lists(
    tmp_path: Path, settings: Settings, kind: str
) -> None:
    write_random_bundle(tmp_path / "m", n_users=60, n_items=120, seed=4)
    answers = {}
    for depth in (0, 12):
        configured = settings.model_copy(
            update={"bundle_path": tmp_path / "m", "precompute_depth": depth, "index_kind": kind}
        )
        store = SQLiteStore(tmp_path / f"store-{depth}.sqlite3")
        recommender = Recommender.load(configured, store)
        queries = [
            RecommendQuery(str(user), k, exclude)
            for user in range(60)
            for k in (1, 10, 20)
            for exclude in (True, False)
        ]
        before = recommender.recommend_many(queries)
        recommender.record(
            [
                Event(user_id=str(user), item_ids=(f"i{(user * 3) % 119}",), timestamp=1.0)
                for user in range(0, 60, 2)
            ]
        )
        recommender.record([Event(user_id="new", item_ids=("i5", "i50"), timestamp=2.0)])
        after = recommender.recommend_many([*queries, RecommendQuery("new", 10)])
        answers[depth] = (before, after)
        store.close()

    assert answers[12] == answers[0]
    moved = recommender._online.items.moved
    assert moved is not None and moved.size > 20
    changed = sum(a != b for a, b in zip(answers[0][0], answers[0][1], strict=False))
    assert changed > 0, "the overlay changed no answer: the test would not see a wrong merge"
