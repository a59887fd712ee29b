"""Item overlay: online edges re-propagate items exactly as LightGCN would; merging into top-k."""

from __future__ import annotations

import numpy as np
import pytest

from bundle import Bundle
from service import recommender as recommender_module
from service.config import Settings
from service.index import MISSING_ITEM
from service.overlay import ItemOverlay, merge_top_k
from service.recommender import Recommender
from service.store import SQLiteStore
from service.store.base import Event
from tests.service.bundles import lightgcn_layers, random_bundle


def rows_of(bundle: Bundle) -> list[np.ndarray]:
    return [bundle.seen_items(user).astype(np.int64) for user in range(bundle.n_users)]


def item_egos(bundle: Bundle) -> np.ndarray:
    assert bundle.item_layers is not None
    return bundle.item_layers[0]


def test_an_online_edge_reproduces_the_lightgcn_forward_over_the_enlarged_graph() -> None:
    bundle = random_bundle(n_users=30, n_items=40, dim=8, seed=4)
    assert bundle.user_ego is not None
    rows = rows_of(bundle)
    new_item = next(item for item in range(bundle.n_items) if item not in set(rows[5]))
    overlay = ItemOverlay(bundle)

    assert overlay.apply([("5", f"i{new_item}")]) == 1

    rows[5] = np.union1d(rows[5], [new_item])
    _, expected_items, _ = lightgcn_layers(bundle.user_ego, item_egos(bundle), rows, 2)
    snapshot = overlay.snapshot
    assert snapshot.items.tolist() == [new_item]
    assert snapshot.changed.tolist() == [snapshot.step] == [1]
    np.testing.assert_allclose(snapshot.vectors[0], expected_items[new_item], rtol=1e-5, atol=1e-6)


def test_a_new_user_on_a_cold_item_uses_the_mean_ego() -> None:
    bundle = random_bundle(n_users=20, n_items=30, dim=8, seed=5)
    assert bundle.user_ego is not None
    cold = bundle.n_items - 1
    assert bundle.item_popularity()[cold] == 0
    overlay = ItemOverlay(bundle)

    overlay.apply([("stranger", f"i{cold}")])

    mean_ego = bundle.user_ego.mean(axis=0).astype(np.float64)
    egos = item_egos(bundle).astype(np.float64)
    layer1 = mean_ego  # the stranger's only neighbour is the cold item: weight 1/sqrt(1*1)
    layer2 = egos[cold]  # the stranger's layer 1 is the cold item's ego, weight 1
    expected = (egos[cold] + layer1 + layer2) / 3
    np.testing.assert_allclose(overlay.snapshot.vectors[0], expected, rtol=1e-5, atol=1e-6)


def test_vectors_do_not_depend_on_how_the_log_was_batched() -> None:
    bundle = random_bundle(seed=6)
    pairs = [("1", "i79"), ("2", "i79"), ("1", "i3"), ("new", "i3"), ("new", "i70"), ("2", "i5")]
    one_by_one, all_at_once = ItemOverlay(bundle), ItemOverlay(bundle)

    for pair in pairs:
        one_by_one.apply([pair])
    all_at_once.apply(pairs)

    np.testing.assert_array_equal(one_by_one.snapshot.items, all_at_once.snapshot.items)
    np.testing.assert_array_equal(one_by_one.snapshot.vectors, all_at_once.snapshot.vectors)


def test_unknown_items_training_edges_and_repeats_add_nothing() -> None:
    bundle = random_bundle(seed=7)
    train_item = bundle.item_ids[int(bundle.seen_items(3)[0])]
    overlay = ItemOverlay(bundle)

    assert overlay.apply([("3", "nope"), ("3", train_item)]) == 0
    assert overlay.snapshot.items.size == 0
    assert overlay.apply([("3", "i79"), ("3", "i79")]) == 1
    assert overlay.apply([("3", "i79")]) == 0


def test_a_bundle_without_layers_is_refused() -> None:
    with pytest.raises(ValueError, match="no LightGCN layers"):
        ItemOverlay(random_bundle(n_layers=None))


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


@pytest.mark.parametrize(
    ("n_posted", "wait_s"),
    [(2, 3600.0), (75, 3600.0), (2, 0.0)],
    ids=["scored-beside-the-index", "rebuilt-when-many", "rebuilt-after-a-wait"],
)
def test_served_scores_use_the_overlay_and_replicas_agree(
    settings: Settings,
    store: SQLiteStore,
    n_posted: int,
    wait_s: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recommender_module, "COMPACT_EVERY_S", wait_s)
    writer = Recommender.load(settings, store)
    reader = Recommender.load(settings, store)
    before = writer.item_vectors()
    bundle_index = reader.index
    posted = tuple(f"i{item}" for item in [79, *range(4, 4 + n_posted - 1)])

    writer.record([Event("newcomer", posted, 1.0), Event("2", ("i79",), 2.0)])

    served = reader.item_vectors()
    np.testing.assert_array_equal(served, writer.item_vectors())
    changed = np.flatnonzero(np.any(served != before, axis=1)).tolist()
    assert changed == sorted(int(item[1:]) for item in posted)
    user = reader.user_vector("7")
    assert user is not None
    result = reader.recommend("7", reader.bundle.n_items, exclude_seen=False)
    scores = dict(result.items)
    expected = served.astype(np.float64) @ user.astype(np.float64)
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
