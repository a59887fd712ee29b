"""ItemIndex: exact top-k with a stable tie order, exclusions, refill, approximate recall."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from service.config import load_settings
from service.index import MISSING_ITEM, ItemIndex, build_index

logger = logging.getLogger(__name__)

SETTINGS = load_settings(allow_open_writes=True)
KINDS = ("exact", "hnsw", "ivf")


def brute_force(
    items: np.ndarray, query: np.ndarray, k: int, exclude: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The reference: float64 scores, excluded items dropped, sorted by (-score, index)."""
    scores = items.astype(np.float64) @ query.astype(np.float64)
    candidates = np.setdiff1d(np.arange(len(items)), exclude)
    order = sorted(candidates.tolist(), key=lambda item: (-scores[item], item))[:k]
    return scores[order], np.asarray(order)


def recall_at_k(index: ItemIndex, items: np.ndarray, queries: np.ndarray, k: int) -> float:
    exact = build_index(items, "exact", SETTINGS)
    empty = [np.empty(0, dtype=np.int64)] * len(queries)
    truth = exact.search(queries, k, empty).items
    found = index.search(queries, k, empty).items
    hits = sum(len(set(a) & set(b)) for a, b in zip(truth.tolist(), found.tolist(), strict=True))
    return hits / truth.size


@pytest.fixture(scope="module")
def catalog() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_search_equals_brute_force_with_exclusions(kind: str, catalog: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((8, 16)).astype(np.float32)
    exclude = [rng.choice(300, size=size, replace=False) for size in (0, 1, 5, 20, 50, 0, 3, 100)]
    index = build_index(catalog, kind, SETTINGS)

    result = index.search(queries, 10, exclude)

    assert result.items.shape == (8, 10)
    for row in range(8):
        _, expected = brute_force(catalog, queries[row], 10, exclude[row])
        assert not set(result.items[row].tolist()) & set(exclude[row].tolist())
        if kind == "exact":
            assert result.items[row].tolist() == expected.tolist()


def test_exact_ties_are_broken_by_lower_item_index() -> None:
    # Items 3, 7, 11, ... are copies of one vector: equal scores, across the fetch boundary.
    rng = np.random.default_rng(2)
    items = rng.standard_normal((60, 8)).astype(np.float32) * 0.01
    items[3::4] = 1.0
    query = np.ones((1, 8), dtype=np.float32)
    index = build_index(items, "exact", SETTINGS)

    result = index.search(query, 5, [np.array([7])])

    assert result.items[0].tolist() == [3, 11, 15, 19, 23]
    assert len(set(result.scores[0].tolist())) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_float32_ties_are_ranked_by_float64_scores_like_the_evaluator(kind: str) -> None:
    # In float32, 1 + 1e-8 rounds to 1: items 0 and 1 would tie and item 0 would come first.
    # The offline evaluator scores in float64, where item 1 is higher; the service must agree.
    items = np.zeros((30, 2), dtype=np.float32)
    items[0] = [1.0, 0.0]
    items[1] = [1.0, 1e-8]
    items[2:, 0] = np.linspace(-1.0, 0.5, 28)
    query = np.ones((1, 2), dtype=np.float32)
    index = build_index(items, kind, SETTINGS)

    result = index.search(query, 2, [np.empty(0, dtype=np.int64)])

    assert result.items[0].tolist() == [1, 0]
    assert result.scores[0, 0] > result.scores[0, 1]


@pytest.mark.parametrize("kind", KINDS)
def test_returns_exactly_k_when_most_of_the_catalog_is_excluded(
    kind: str, catalog: np.ndarray
) -> None:
    query = np.random.default_rng(3).standard_normal((1, 16)).astype(np.float32)
    keep = np.array([5, 17, 123, 250, 299])
    exclude = np.setdiff1d(np.arange(300), keep)
    index = build_index(catalog, kind, SETTINGS)

    result = index.search(query, 5, [exclude])

    _, expected = brute_force(catalog, query[0], 5, exclude)
    assert result.items[0].tolist() == expected.tolist()


def test_short_catalog_pads_with_missing_items(catalog: np.ndarray) -> None:
    index = build_index(catalog, "exact", SETTINGS)
    exclude = np.arange(297)

    result = index.search(np.ones((1, 16), dtype=np.float32), 5, [exclude])

    assert sorted(result.items[0, :3].tolist()) == [297, 298, 299]
    assert result.items[0, 3:].tolist() == [MISSING_ITEM, MISSING_ITEM]
    assert np.isneginf(result.scores[0, 3:]).all()


def test_hnsw_recall_against_exact_with_default_parameters() -> None:
    rng = np.random.default_rng(4)
    items = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((100, 32)).astype(np.float32)

    recall = recall_at_k(build_index(items, "hnsw", SETTINGS), items, queries, 20)

    logger.info("HNSW(M=%d, efSearch=%d) recall@20 = %.4f", 32, 128, recall)
    assert recall >= 0.9


def test_ivf_recall_against_exact_on_a_clustered_catalog() -> None:
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((40, 32)).astype(np.float32) * 3
    items = (centres[rng.integers(0, 40, 3000)] + rng.standard_normal((3000, 32))).astype(
        np.float32
    )
    queries = rng.standard_normal((100, 32)).astype(np.float32)

    recall = recall_at_k(build_index(items, "ivf", SETTINGS), items, queries, 20)

    logger.info("IVF(nlist=64, nprobe=16) recall@20 = %.4f", recall)
    assert recall >= 0.9


def test_item_matrix_is_read_only(catalog: np.ndarray) -> None:
    index = build_index(catalog, "exact", SETTINGS)
    before = catalog.copy()

    with pytest.raises(ValueError, match="read-only"):
        index._items[0, 0] = 1.0
    catalog[0, 0] += 1.0  # the caller's array is not shared with the index

    assert np.array_equal(index._items, before)


@pytest.mark.parametrize(
    ("queries", "k", "n_exclude", "message"),
    [
        (np.ones((2, 15), dtype=np.float32), 3, 2, r"queries must have shape \(B, 16\)"),
        (np.ones((2, 16), dtype=np.float32), 3, 1, "exclude has 1 entries, expected one per"),
        (np.ones((2, 16), dtype=np.float32), 0, 2, "k must be >= 1"),
    ],
)
def test_bad_search_arguments_are_refused(
    catalog: np.ndarray, queries: np.ndarray, k: int, n_exclude: int, message: str
) -> None:
    index = build_index(catalog, "exact", SETTINGS)
    with pytest.raises(ValueError, match=message):
        index.search(queries, k, [np.empty(0, dtype=np.int64)] * n_exclude)
