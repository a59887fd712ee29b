"""Top-k inner-product search over the item embeddings: the only FAISS code of the service.

``build_index`` wraps the read-only item matrix in an exact ``IndexFlatIP`` (the default) or an
approximate index (HNSW on inner product, or IVF) and returns an :class:`ItemIndex`. Its
``search`` returns exactly ``k`` non-excluded items per query whenever the catalog has ``k``:
it over-fetches by the number of excluded items, and falls back to an exact pass over the
whole catalog for a query where the approximate index returned too few, or where a tie in
score crosses the fetched boundary. Results are ordered by descending score, ties broken by
the lower item index; the returned scores are recomputed in float64, like the offline
evaluator's (``training/evaluate.py``), so both rank near-ties the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import faiss
import numpy as np

from bundle import frozen
from service.config import Settings

logger = logging.getLogger(__name__)

IndexKind = Literal["exact", "hnsw", "ivf"]
MISSING_ITEM = -1
# |fl32(x . q) - x . q| <= FLOAT32_DOT_ERROR * dim * |x| |q| for any summation order (with room).
FLOAT32_DOT_ERROR = 1.2e-7
# FAISS wants at least 39 training points per IVF cell; fewer cells for smaller catalogs.
IVF_POINTS_PER_CELL = 39


class SearchResult(NamedTuple):
    """Per-query top-k: ``scores`` float64 (B, k) and ``items`` int64 (B, k).

    A row with fewer than ``k`` candidates (the catalog minus its exclusions is smaller than
    ``k``) is padded at the end with item ``MISSING_ITEM`` and score ``-inf``.
    """

    scores: np.ndarray
    items: np.ndarray


def _order(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Positions that sort candidates by descending score, then ascending item index."""
    return np.lexsort((items, -scores))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``values`` as a sorted unique int64 array (returned as is when it already is one)."""
    values = np.asarray(values)
    if values.dtype == np.int64 and (values.size < 2 or bool((values[1:] > values[:-1]).all())):
        return values
    return np.unique(values.astype(np.int64))


def exact_scores(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Float64 inner products of each of ``rows`` with ``query``.

    Each row's sum is taken in one fixed order whatever the other rows (``einsum``'s loop;
    a BLAS product can round a row differently depending on how many rows it is given), so
    an item scores the same from the index, beside it, or from a precomputed list.
    """
    return np.asarray(np.einsum("ij,j->i", rows.astype(np.float64), query.astype(np.float64)))


def is_member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted unique ``sorted_set``, by binary search."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[positions] == values)


class ItemIndex:
    """A read-only top-k searcher over ``item_embeddings`` (n_items, dim) float32."""

    def __init__(self, item_embeddings: np.ndarray, index: faiss.Index, kind: IndexKind) -> None:
        if item_embeddings.ndim != 2 or item_embeddings.dtype != np.float32:
            raise ValueError(
                "item_embeddings must be a 2-D float32 array, got "
                f"shape {item_embeddings.shape} dtype {item_embeddings.dtype}"
            )
        self._items = item_embeddings
        self._max_norm = float(np.linalg.norm(item_embeddings, axis=1).max(initial=0.0))
        self._index = index
        self.kind: IndexKind = kind

    @property
    def faiss_index(self) -> faiss.Index:
        """The FAISS index searched (to save it; never modify it)."""
        return self._index

    @property
    def size(self) -> int:
        """Number of items in the catalog."""
        return int(self._items.shape[0])

    @property
    def dim(self) -> int:
        return int(self._items.shape[1])

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray]) -> SearchResult:
        """Top-``k`` items of each row of ``queries`` (B, dim), leaving out ``exclude[b]``."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (B, {self.dim}), got {queries.shape}")
        if len(exclude) != queries.shape[0]:
            raise ValueError(
                f"exclude has {len(exclude)} entries, expected one per query ({queries.shape[0]})"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        n_queries = queries.shape[0]
        scores = np.full((n_queries, k), -np.inf, dtype=np.float64)
        items = np.full((n_queries, k), MISSING_ITEM, dtype=np.int64)
        if n_queries == 0:
            return SearchResult(scores, items)
        excluded = [_sorted_unique(row) for row in exclude]
        fetch = min(self.size, k + max(len(row) for row in excluded) + 1)
        cand_scores, cand_items = self._index.search(queries, fetch)
        for row in range(n_queries):
            query = queries[row]
            found = self._select(query, cand_scores[row], cand_items[row], excluded[row], k)
            if found is None:
                found = self._exact(query, excluded[row], k)
            row_scores, row_items = found
            scores[row, : len(row_items)] = row_scores
            items[row, : len(row_items)] = row_items
        return SearchResult(scores, items)

    def _rescore(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Float64 scores of ``items``, as the offline evaluator computes them."""
        return exact_scores(self._items[items], query)

    def _margin(self, query: np.ndarray) -> float:
        """A bound on the error of a float32 score of ``query`` against any item."""
        return FLOAT32_DOT_ERROR * self.dim * math.sqrt(float(query @ query)) * self._max_norm

    def _select(
        self,
        query: np.ndarray,
        cand_scores: np.ndarray,
        cand_items: np.ndarray,
        excluded: np.ndarray,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The top-k from one query's candidates, or None when they cannot be trusted.

        They cannot when too few are left after exclusion, or when an item beyond the fetched
        window could still outrank the k-th (its float32 score is within rounding of it).
        """
        valid = cand_items != MISSING_ITEM
        kept_items = cand_items[valid & ~is_member(cand_items, excluded)]
        wanted = min(k, self.size - len(excluded))
        if len(kept_items) < wanted:
            return None
        kept_scores = self._rescore(query, kept_items)
        order = _order(kept_scores, kept_items)[:wanted]
        kept_scores, kept_items = kept_scores[order], kept_items[order]
        window_is_catalog = self.kind == "exact" and len(cand_items) == self.size
        if wanted and not window_is_catalog:
            boundary = float(cand_scores[valid][-1])
            if kept_scores[-1] <= boundary + self._margin(query):
                return None
        return kept_scores, kept_items

    def _exact(
        self, query: np.ndarray, excluded: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of one query over the whole catalog (float64 near the cut)."""
        allowed = np.ones(self.size, dtype=bool)
        allowed[excluded] = False
        candidates = np.flatnonzero(allowed)
        rough = self._items[candidates] @ query
        if len(candidates) > k:
            cut = np.partition(rough, len(candidates) - k)[len(candidates) - k]
            candidates = candidates[rough >= cut - 2 * self._margin(query)]
        scores = self._rescore(query, candidates)
        order = _order(scores, candidates)[:k]
        return scores[order], candidates[order].astype(np.int64)


def _faiss_index(items: np.ndarray, kind: IndexKind, settings: Settings) -> faiss.Index:
    dim = items.shape[1]
    index: faiss.Index
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
    elif kind == "ivf":
        nlist = max(1, min(settings.ivf_nlist, items.shape[0] // IVF_POINTS_PER_CELL))
        if nlist < settings.ivf_nlist:
            logger.info(
                "ivf: %d items support %d cells, not %d", len(items), nlist, settings.ivf_nlist
            )
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(items)
    else:
        raise ValueError(f"unknown index kind {kind!r}; expected 'exact', 'hnsw' or 'ivf'")
    index.add(items)
    return index


def _frozen_items(item_embeddings: np.ndarray) -> np.ndarray:
    """``item_embeddings`` as a read-only C-contiguous float32 array (see :func:`frozen`)."""
    if item_embeddings.ndim != 2 or item_embeddings.shape[0] == 0:
        raise ValueError(
            f"item_embeddings must be a non-empty (n_items, dim) array, got {item_embeddings.shape}"
        )
    return frozen(np.asarray(item_embeddings, dtype=np.float32))


def wrap_index(
    item_embeddings: np.ndarray, index: faiss.Index, kind: IndexKind, settings: Settings
) -> ItemIndex:
    """An :class:`ItemIndex` over a built (or loaded) FAISS ``index`` of ``item_embeddings``,
    with the search-time settings (HNSW search breadth, IVF cells probed) applied."""
    faiss.omp_set_num_threads(settings.search_threads)
    if kind == "hnsw":
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efSearch = settings.hnsw_ef_search
    elif kind == "ivf":
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = min(settings.ivf_nprobe, ivf.nlist)
    return ItemIndex(_frozen_items(item_embeddings), index, kind)


def build_index(item_embeddings: np.ndarray, kind: IndexKind, settings: Settings) -> ItemIndex:
    """Index ``item_embeddings`` (n_items, dim) float32 for inner-product top-k search.

    The matrix is kept read-only (copied unless it already is read-only), so no request can
    modify it. FAISS's OpenMP pool is set to ``settings.search_threads`` for the process (one
    request is one small search: more threads only spin against the other workers and the
    event loop).
    """
    faiss.omp_set_num_threads(settings.search_threads)
    items = _frozen_items(item_embeddings)
    return wrap_index(items, _faiss_index(items, kind, settings), kind, settings)
