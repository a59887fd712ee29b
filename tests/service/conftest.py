"""Service test fixtures shared by the test modules (API modules define their own ``client``,
and ``store`` where theirs is the client's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bundle import Bundle, read_bundle
from service.config import Settings, load_settings
from service.store import SQLiteStore
from tests.service.bundles import write_random_bundle


@pytest.fixture
def bundle(client: TestClient) -> Bundle:
    """The bundle the module's ``client`` serves."""
    return read_bundle(client.app.state.settings.bundle_path)  # type: ignore[attr-defined]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings serving a random bundle (with layers) under ``tmp_path/models``, open writes."""
    write_random_bundle(tmp_path / "models")
    return load_settings(
        bundle_path=tmp_path / "models", allow_open_writes=True, api_key=None, REDIS_URL=None
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A fresh SQLite store in ``tmp_path``."""
    opened = SQLiteStore(tmp_path / "store.sqlite3")
    yield opened
    opened.close()
