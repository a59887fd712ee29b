"""The online state: incremental updates equal a from-scratch recomputation; merging into top-k."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from bundle import Bundle, fold_in_user
from service.catalog import Catalog
from service.config import Settings
from service.index import MISSING_ITEM, build_index
from service.online import OnlineState
from service.overlay import ONLINE_WINDOW, ItemSide
from service.recommender import Recommender
from service.served import merge_top_k
from service.store import SQLiteStore
from service.store.base import Event
from service.strategies import PropagateStrategy
from tests.service.bundles import lightgcn_layers, random_bundle
from tests.service.reference import reference


def online_state(bundle: Bundle, settings: Settings, window: int = ONLINE_WINDOW) -> OnlineState:
    index = build_index(bundle.item_embeddings, "exact", settings)
    return OnlineState(
        Catalog(bundle),
        PropagateStrategy(bundle),
        ItemSide(bundle, window),
        index,
        bundle.item_embeddings,
    )


def apply_in_chunks(state: OnlineState, pairs: list[tuple[str, str]], cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(pairs)]
    for start, stop in itertools.pairwise(bounds):
        with state.lock:
            state.apply(stop, pairs[start:stop])


def served(state: OnlineState) -> np.ndarray:
    with state.lock:
        return state.served_vectors()[0]


def random_log(bundle: Bundle, rng: np.random.Generator, n_pairs: int) -> list[tuple[str, str]]:
    """Bundle users and strangers, repeats, training items and unknown items, in runs."""
    users = [*rng.choice(bundle.n_users, size=6, replace=False).astype(str), "s1", "s2"]
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n_pairs:
        user = str(rng.choice(users))
        for _ in range(int(rng.integers(1, 12))):
            roll = rng.random()
            if roll < 0.05:
                item = "unknown"
            elif roll < 0.15 and user.isdigit():
                item = bundle.item_ids[int(rng.choice(bundle.seen_items(int(user))))]
            else:
                item = bundle.item_ids[int(rng.integers(bundle.n_items))]
            pairs.append((user, item))
    return pairs


@pytest.mark.parametrize("window", [1, 3, ONLINE_WINDOW])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_state_equals_a_full_recomputation(
    settings: Settings, seed: int, window: int
) -> None:
    rng = np.random.default_rng(seed)
    bundle = random_bundle(n_users=30, n_items=40, dim=8, seed=seed, n_layers=[1, 2, 3][seed])
    pairs = random_log(bundle, rng, 120)
    state = online_state(bundle, settings, window)

    apply_in_chunks(state, pairs, rng.choice(len(pairs), size=7, replace=False).tolist())

    expected = reference(bundle, pairs, window)
    np.testing.assert_allclose(served(state), expected.item_vectors, rtol=1e-5, atol=1e-5)
    assert set(state.users) == set(expected.posted)
    for user, vector in expected.user_vectors.items():
        view = state.users[user]
        assert view.vector is not None
        np.testing.assert_allclose(view.vector, vector, rtol=1e-5, atol=1e-6)
        row = Catalog(bundle).user_row(user)
        train = bundle.seen_items(row).tolist() if row is not None else []
        assert view.exclude.tolist() == sorted({*train, *expected.posted[user]})


def test_the_state_does_not_depend_on_how_the_log_was_chunked(settings: Settings) -> None:
    bundle = random_bundle(seed=6)
    pairs = random_log(bundle, np.random.default_rng(6), 300)
    one_by_one, all_at_once = online_state(bundle, settings, 4), online_state(bundle, settings, 4)

    apply_in_chunks(one_by_one, pairs, list(range(1, len(pairs))))
    apply_in_chunks(all_at_once, pairs, [])

    np.testing.assert_allclose(served(one_by_one), served(all_at_once), rtol=1e-9, atol=1e-9)
    for user, view in all_at_once.users.items():
        np.testing.assert_array_equal(one_by_one.users[user].exclude, view.exclude)
        np.testing.assert_allclose(one_by_one.users[user].vector, view.vector, rtol=1e-6)


def test_a_cold_item_reproduces_the_lightgcn_forward_over_the_enlarged_graph(
    settings: Settings,
) -> None:
    bundle = random_bundle(n_users=30, n_items=40, dim=8, seed=4)
    assert bundle.user_ego is not None and bundle.item_layers is not None
    cold = bundle.n_items - 1
    assert bundle.item_popularity()[cold] == 0
    state = online_state(bundle, settings)

    with state.lock:
        state.apply(1, [("5", f"i{cold}")])

    rows = [bundle.seen_items(user).astype(np.int64) for user in range(bundle.n_users)]
    rows[5] = np.union1d(rows[5], [cold])
    _, expected_items, _ = lightgcn_layers(bundle.user_ego, bundle.item_layers[0], rows, 2)
    assert state.items.pending.tolist() == [cold]
    np.testing.assert_allclose(
        state.items.pending_vectors[0], expected_items[cold], rtol=1e-5, atol=1e-6
    )


def test_a_new_user_on_a_cold_item_uses_the_mean_ego(settings: Settings) -> None:
    bundle = random_bundle(n_users=20, n_items=30, dim=8, seed=5)
    assert bundle.user_ego is not None and bundle.item_layers is not None
    cold = bundle.n_items - 1
    state = online_state(bundle, settings)

    with state.lock:
        state.apply(1, [("stranger", f"i{cold}")])

    mean_ego = bundle.user_ego.mean(axis=0).astype(np.float64)
    egos = bundle.item_layers[0].astype(np.float64)
    layer1 = mean_ego  # the stranger's only neighbour is the cold item: weight 1/sqrt(1*1)
    layer2 = egos[cold]  # the stranger's layer 1 is the cold item's ego, weight 1
    expected = (egos[cold] + layer1 + layer2) / 3
    np.testing.assert_allclose(state.items.pending_vectors[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        state.users["stranger"].vector,
        fold_in_user(mean_ego, bundle.item_layers, np.asarray([cold]), bundle.item_popularity()),
        rtol=1e-5,
    )


def test_unknown_items_training_edges_and_repeats_add_nothing(settings: Settings) -> None:
    bundle = random_bundle(seed=7)
    train_item = bundle.item_ids[int(bundle.seen_items(3)[0])]
    state = online_state(bundle, settings)

    with state.lock:
        state.apply(2, [("3", "nope"), ("3", train_item)])
    assert state.items.pending.size == 0 and "3" not in state.users
    with state.lock:
        state.apply(4, [("3", "i79"), ("3", "i79")])
        first = state.users["3"]
        state.apply(5, [("3", "i79")])
    assert state.users["3"] is first
    assert state.revision == state.items.revision == 5


def test_a_bundle_without_layers_is_refused() -> None:
    with pytest.raises(ValueError, match="no LightGCN layers"):
        ItemSide(random_bundle(n_layers=None))


def test_merge_top_k_orders_by_score_then_index_and_pads() -> None:
    scores = np.array([3.0, 2.0, -np.inf])
    items = np.array([7, 2, MISSING_ITEM])

    merged = merge_top_k(scores, items, np.array([2.0, 4.0]), np.array([5, 9]), 4, MISSING_ITEM)
    padded = merge_top_k(
        scores[:1], items[:1], np.empty(0), np.empty(0, dtype=int), 3, MISSING_ITEM
    )

    assert merged[1].tolist() == [9, 7, 2, 5]
    assert merged[0].tolist() == [4.0, 3.0, 2.0, 2.0]
    assert padded[1].tolist() == [7, MISSING_ITEM, MISSING_ITEM]
    assert padded[0][1] == -np.inf


@pytest.mark.parametrize("compacted", [False, True], ids=["scored-beside-the-index", "rebuilt"])
@pytest.mark.parametrize("n_posted", [2, 75])
def test_served_scores_use_the_moved_items_and_replicas_agree(
    settings: Settings, store: SQLiteStore, n_posted: int, compacted: bool
) -> None:
    writer = Recommender.load(settings, store)
    reader = Recommender.load(settings, store)
    before = writer.item_vectors()
    bundle_index = reader.index
    posted = tuple(f"i{item}" for item in [79, *range(4, 4 + n_posted - 1)])

    writer.record([Event("newcomer", posted, 1.0), Event("2", ("i79",), 2.0)])

    served_now = reader.item_vectors()
    np.testing.assert_array_equal(served_now, writer.item_vectors())
    changed = np.flatnonzero(np.any(served_now != before, axis=1)).tolist()
    assert changed == sorted(int(item[1:]) for item in posted)
    if compacted:
        online = reader._online
        with online.lock:
            vectors, revision = online.served_vectors()
            online.swap_index(build_index(vectors, "exact", settings), revision)
        assert online.items.pending.size == 0
    user = reader.user_vector("7")
    assert user is not None
    result = reader.recommend("7", reader.bundle.n_items, exclude_seen=False)
    scores = dict(result.items)
    expected = served_now.astype(np.float64) @ user.astype(np.float64)
    for item in ("i79", "i4", "i0"):
        assert scores[item] == pytest.approx(expected[int(item[1:])], rel=1e-6)
    ranked = [item for item, _ in result.items]
    assert ranked == [f"i{item}" for item in np.lexsort((np.arange(80), -expected)).tolist()]
    assert reader.index is bundle_index
    np.testing.assert_array_equal(reader.bundle.item_embeddings, before)


def test_fold_items_off_serves_the_bundles_items(settings: Settings, store: SQLiteStore) -> None:
    plain = Recommender.load(settings.model_copy(update={"fold_items": False}), store)

    plain.record([Event("newcomer", ("i79",), 1.0)])

    np.testing.assert_array_equal(plain.item_vectors(), plain.bundle.item_embeddings)


def test_the_worker_rebuilds_the_index_with_the_moved_items(
    settings: Settings, store: SQLiteStore
) -> None:
    recommender = Recommender.load(settings, store)
    posted = tuple(f"i{item}" for item in range(3, 3 + 70))

    recommender.record([Event("newcomer", posted, 1.0)])
    recommender.sync()
    online = recommender._online
    deadline = time.monotonic() + 30.0
    while online.items.pending.size and time.monotonic() < deadline:
        time.sleep(0.01)

    view = online.items
    assert view.pending.size == 0 and view.index is not recommender.index
    assert view.index_revision == online.revision
    user = recommender.user_vector("newcomer")
    assert user is not None
    expected = recommender.item_vectors().astype(np.float64) @ user.astype(np.float64)
    expected[[int(item[1:]) for item in posted]] = -np.inf
    ranked = [item for item, _ in recommender.recommend("newcomer", 5).items]
    assert ranked == [f"i{item}" for item in np.lexsort((np.arange(80), -expected))[:5].tolist()]
