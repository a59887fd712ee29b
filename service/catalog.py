"""The ids of one model's users and items, their training rows, and item popularity.

Indices are positions in the bundle's ``ids.json``. The maps are plain dictionaries and lists
keyed by position, so an item appended at runtime would get the next index without moving
any other; everything derived per item (popularity, the popular order) is computed from the
training degrees, one entry per item.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from bundle import Bundle, frozen
from service.index import MISSING_ITEM

NO_ITEMS = frozen(np.empty(0, dtype=np.int64))
"""An empty item list (catalog indices), shared."""


class Catalog:
    """User and item ids of ``bundle``, the users' training items, and item popularity."""

    def __init__(self, bundle: Bundle) -> None:
        self.user_ids: list[str] = list(bundle.user_ids)
        self.item_ids: list[str] = list(bundle.item_ids)
        self._user_rows = {user: row for row, user in enumerate(self.user_ids)}
        self._item_columns = {item: column for column, item in enumerate(self.item_ids)}
        self._indptr = bundle.train_indptr
        self._indices = bundle.train_indices
        degrees = bundle.item_popularity()
        self.train_degrees = frozen(degrees.astype(np.int64))
        """Each item's number of training users."""
        self._popularity = frozen(degrees.astype(np.float32))
        self._popular = frozen(np.lexsort((np.arange(degrees.size), -degrees)))

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_row(self, user_id: str) -> int | None:
        """The bundle row of ``user_id``, or None for a user the bundle does not know."""
        return self._user_rows.get(user_id)

    def item(self, item_id: str) -> int | None:
        """The catalog index of ``item_id``, or None when it is not in the catalog."""
        return self._item_columns.get(item_id)

    def unknown_items(self, item_ids: Iterable[str]) -> list[str]:
        """The ids in ``item_ids`` that are not in the catalog, in order."""
        return [item for item in item_ids if item not in self._item_columns]

    def train_items(self, row: int | None) -> np.ndarray:
        """The sorted training items of bundle row ``row`` (none for None)."""
        if row is None:
            return NO_ITEMS
        return np.unique(self._indices[self._indptr[row] : self._indptr[row + 1]].astype(np.int64))

    def named(self, items: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
        """``(item_id, score)`` pairs of ``items``, padding (``MISSING_ITEM``) left out."""
        ids = self.item_ids
        return [
            (ids[item], float(score))
            for item, score in zip(items.tolist(), scores.tolist(), strict=True)
            if item != MISSING_ITEM
        ]

    def popular(self, k: int, exclude: Sequence[int] | np.ndarray) -> list[tuple[str, float]]:
        """The ``k`` most popular items outside ``exclude``, with their training degree."""
        order = self._popular[~np.isin(self._popular, exclude)][:k]
        return self.named(order, self._popularity[order])
