"""Fixtures shared by every test package: the real shared datasets and a synthetic one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATASETS_ENV = "PROMPTMM_SHARED_DATASETS"


def shared_datasets_dir() -> Path:
    """``<repo>/../shared/datasets``, or the folder named by $PROMPTMM_SHARED_DATASETS."""
    override = os.environ.get(SHARED_DATASETS_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The folder holding the real datasets (tiktok/, baby/, ml100k-mm/); skips when absent."""
    path = shared_datasets_dir()
    if not path.is_dir():
        pytest.skip(
            f"shared datasets not found at {path}: put them at <repo>/../shared/datasets "
            f"or set {SHARED_DATASETS_ENV} to their folder"
        )
    return path.resolve()


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder written by ``write_synthetic`` with its defaults (MMRec layout, 300 users,
    200 items, image 32 + text 16); load it with ``training.data.load_dataset``."""
    from training.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("data") / "synthetic")
