"""Where online interactions and fine-tuned user vectors live: one protocol, two stores."""

from __future__ import annotations

from service.config import Settings
from service.store.base import Event, Store, StoreError
from service.store.redis import RedisStore
from service.store.sqlite import SQLiteStore

__all__ = ["Event", "RedisStore", "SQLiteStore", "Store", "StoreError", "open_store"]


def open_store(settings: Settings) -> Store:
    """Redis when ``settings.redis_url`` is set (replicas share it), else the SQLite file."""
    if settings.redis_url:
        return RedisStore(settings.redis_url, settings.redis_prefix)
    return SQLiteStore(settings.store_path)
