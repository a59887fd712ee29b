"""Fixtures shared by every test package: the shared datasets, a synthetic one, a real Redis.

redis is imported inside its fixtures: the training tests also run where only torch's stack is
installed (the GPU machine, `bench/device_run.sh`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import drop_redis_prefix

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


DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis: env PROMPTMM_TEST_REDIS_URL, else database 15 on localhost."""
    import redis

    url = os.environ.get("PROMPTMM_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(
            f"no Redis answers at {url} ({exc}); start one (redis-server) or set "
            "PROMPTMM_TEST_REDIS_URL to run the Redis tests"
        )
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    prefix = f"promptmm-test-{uuid.uuid4().hex}"
    yield prefix
    drop_redis_prefix(redis_url, prefix)
