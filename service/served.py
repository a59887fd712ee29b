"""Search over the served items: the index of one :class:`~service.online.ItemsView` plus the
items that moved since it was built, scored exactly and merged in.

The view's index never holds a moved item's old vector in an answer: the moved items are
left out of its search and scored exactly in float64 (as the index rescores), then merged by
(descending score, ascending item index), the order of the index and the offline evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.index import MISSING_ITEM, exact_scores, is_member
from service.online import ItemsView


def merge_top_k(
    found_scores: np.ndarray,
    found_items: np.ndarray,
    extra_scores: np.ndarray,
    extra_items: np.ndarray,
    k: int,
    missing: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` of the index's candidates and the ``extra`` scored items together.

    Ordered by descending score, ties by the lower item index (as the index and the offline
    evaluator order); rows shorter than ``k`` are padded with ``missing`` / ``-inf``.
    """
    valid = found_items != missing
    items = np.concatenate([found_items[valid], extra_items.astype(np.int64)])
    scores = np.concatenate([found_scores[valid], extra_scores.astype(np.float64)])
    order = np.lexsort((items, -scores))[:k]
    out_scores = np.full(k, -np.inf)
    out_items = np.full(k, missing, dtype=np.int64)
    out_scores[: len(order)] = scores[order]
    out_items[: len(order)] = items[order]
    return out_scores, out_items


def with_moved(
    scores: np.ndarray,
    items: np.ndarray,
    moved: np.ndarray,
    moved_scores: np.ndarray,
    exclude: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A top-``k`` (``scores``, ``items``) that left ``moved`` out, with those merged in.

    ``moved`` (sorted) are scored exactly by ``moved_scores``; those in ``exclude`` (sorted)
    stay out. Only their own top ``k`` (ties at the cut included) can enter.
    """
    allowed = ~is_member(moved, exclude)
    extra, extra_items = moved_scores[allowed], moved[allowed]
    if extra.size > k:
        best = extra >= np.partition(extra, extra.size - k)[extra.size - k]
        extra, extra_items = extra[best], extra_items[best]
    return merge_top_k(scores, items, extra, extra_items, k, MISSING_ITEM)


def search(
    view: ItemsView, vectors: np.ndarray, excludes: Sequence[np.ndarray], ks: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-``ks[b]`` (float64 scores, items) of each row of ``vectors`` over ``view``."""
    pending = view.pending
    searched = excludes
    if pending.size:
        searched = [np.union1d(exclude, pending) for exclude in excludes]
    found = view.index.search(vectors, max(ks), searched)
    results = []
    for row, k in enumerate(ks):
        scores, items = found.scores[row, :k], found.items[row, :k]
        if pending.size:
            extra = exact_scores(view.pending64, vectors[row])
            scores, items = with_moved(scores, items, pending, extra, excludes[row], k)
        results.append((scores, items))
    return results
