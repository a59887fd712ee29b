"""Starting on a bundle path where nothing exists fails at once, saying what to run."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.config import load_settings
from service.main import create_app


def test_missing_bundle_path_names_the_command_that_writes_it(tmp_path: Path) -> None:
    settings = load_settings(
        bundle_path=tmp_path / "models" / "tiktok",
        store_path=tmp_path / "store.sqlite3",
        allow_open_writes=True,
        api_key=None,
        REDIS_URL=None,
    )
    with pytest.raises(ValueError) as raised, TestClient(create_app(settings)):
        pass
    message = str(raised.value)
    assert f"PROMPTMM_BUNDLE_PATH={tmp_path / 'models' / 'tiktok'}: no such file" in message
    assert "python -m training run configs/tiktok.toml" in message
    assert "scripts/demo.sh" in message
    assert not (tmp_path / "store.sqlite3").exists(), "nothing is written before the check"
