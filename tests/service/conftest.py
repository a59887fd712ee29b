"""Service test fixtures shared by the API test modules (each defines its own ``client``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from bundle import Bundle, read_bundle


@pytest.fixture
def bundle(client: TestClient) -> Bundle:
    """The bundle the module's ``client`` serves."""
    return read_bundle(client.app.state.settings.bundle_path)  # type: ignore[attr-defined]
