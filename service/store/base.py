"""The store protocol: where interactions posted online and fine-tuned user vectors live.

Two implementations: ``SQLiteStore`` (embedded, one process, WAL, the default) and
``RedisStore`` (shared by replicas, chosen when ``REDIS_URL`` is set). Ids are the external
string ids of the bundle's ``ids.json``, so stored data survives a bundle reload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Event:
    """One ``POST /interactions`` event: a user interacted with some items at a time."""

    user_id: str
    item_ids: tuple[str, ...]
    timestamp: float


class StoreError(RuntimeError):
    """The store is unreachable or refused an operation."""


@runtime_checkable
class Store(Protocol):
    def append(self, events: Sequence[Event]) -> None:
        """Durably record every event, all or none, before returning."""

    def seen(self, user_id: str) -> set[str]:
        """Every item id recorded for ``user_id`` through :meth:`append`."""

    def get_vector(self, user_id: str, model_version: str) -> np.ndarray | None:
        """The fine-tuned vector of ``user_id`` for ``model_version``, if one was stored."""

    def put_vector(self, user_id: str, model_version: str, vector: np.ndarray) -> None:
        """Store the fine-tuned float32 vector of ``user_id`` for ``model_version``."""

    def ping(self) -> bool:
        """True when the backing store answers."""

    def close(self) -> None:
        """Release connections."""
