"""The service's default bundle path is where the training CLI exports the tiktok model."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from training.config import REPO_ROOT, load_config


def test_default_bundle_path_is_where_training_exports() -> None:
    config = load_config(REPO_ROOT / "configs" / "tiktok.toml")
    exported = Path(config.run.models_dir) / Path(config.data.path).resolve().name
    default = Settings.model_fields["bundle_path"].default
    assert not default.is_absolute(), "relative to the repository, where the service starts"
    assert REPO_ROOT / default == exported
