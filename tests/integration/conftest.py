"""Integration fixtures: a tiny trained bundle and services on it (see :mod:`bench.harness`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from bench.harness import ServiceProcess, train_tiny_bundle


class ServiceFactory(Protocol):
    def __call__(
        self, *, redis_url: str | None = ..., redis_prefix: str = ..., store_path: Path | None = ...
    ) -> ServiceProcess: ...


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root (``LATEST`` + one version) trained by the real CLI on a synthetic set."""
    return train_tiny_bundle(tmp_path_factory.mktemp("tiny-training"))


@pytest.fixture
def service_factory(tiny_models_root: Path, tmp_path: Path) -> Iterator[ServiceFactory]:
    """Build (not start) services on the tiny bundle; every one is stopped at teardown."""
    services: list[ServiceProcess] = []

    def make(
        *,
        redis_url: str | None = None,
        redis_prefix: str = "promptmm",
        store_path: Path | None = None,
    ) -> ServiceProcess:
        env = {
            "PROMPTMM_BUNDLE_PATH": str(tiny_models_root),
            "PROMPTMM_STORE_PATH": str(store_path or tmp_path / "store.sqlite3"),
            "PROMPTMM_LOG_LEVEL": "WARNING",
        }
        if redis_url is not None:
            env |= {"REDIS_URL": redis_url, "PROMPTMM_REDIS_PREFIX": redis_prefix}
        service = ServiceProcess(env, tmp_path / f"service-{len(services)}.log")
        services.append(service)
        return service

    yield make
    for service in services:
        service.stop(kill=True)
