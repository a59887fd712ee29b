"""What neither `docker-compose config` (test_compose_cli.py) nor the stack run for real
(scripts/compose-smoke.sh: build, up, healthy, SIGKILL, AOF, down -v) checks in the compose
files: the trainer (GPU, profile, paths), mount modes, the scale-out's nginx, read as YAML."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.deploy.dockerfile import read_stages
from tests.deploy.files import (
    COMPOSE,
    COMPOSE_SCALE,
    DOCKERFILE,
    NGINX_CONF,
    REPO_ROOT,
    compose_environment,
    interpolate,
    load_yaml,
)
from training.config import SHARED_DATASETS_ENV, load_config


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_yaml(COMPOSE)["services"]


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) of a service's short-syntax volumes, defaults applied."""
    mounts = {}
    for entry in service.get("volumes", []):
        parts = interpolate(entry, {}).split(":")
        mode = parts[2] if len(parts) > 2 else "rw"
        mounts[parts[1]] = (parts[0], mode)
    return mounts


def test_redis_keeps_its_append_only_file_on_a_named_volume(services: dict[str, Any]) -> None:
    """The smoke's SIGKILL keeps the container; `down` without -v must keep the data too."""
    source, mode = _mounts(services["redis"])["/data"]
    assert source in load_yaml(COMPOSE)["volumes"] and mode == "rw"


def test_api_waits_for_a_healthy_redis(services: dict[str, Any]) -> None:
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_api_reads_the_bundle_read_only_under_its_mount(services: dict[str, Any]) -> None:
    api = services["api"]
    bundle = PurePosixPath(interpolate(compose_environment(api)["PROMPTMM_BUNDLE_PATH"] or "", {}))
    mounts = _mounts(api)
    target = next((t for t in mounts if PurePosixPath(t) in bundle.parents), None)
    assert target is not None, f"no volume holds PROMPTMM_BUNDLE_PATH={bundle}"
    assert mounts[target] == ("./models", "ro")


def test_trainer_is_a_gpu_job_under_the_train_profile(services: dict[str, Any]) -> None:
    trainer = services["trainer"]
    assert trainer["profiles"] == ["train"]
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert trainer["command"][0] == "run"
    assert (REPO_ROOT / trainer["command"][1]).is_file()


def test_trainer_paths_follow_its_training_config(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config's models_dir (relative to the repository, i.e. the image's WORKDIR) is the
    ./models the API reads, and its data path lands in the read-only datasets mount."""
    trainer = services["trainer"]
    env = compose_environment(trainer)
    monkeypatch.setenv(SHARED_DATASETS_ENV, env[SHARED_DATASETS_ENV] or "")
    config = load_config(REPO_ROOT / trainer["command"][1])
    workdir = read_stages(DOCKERFILE)["trainer"].last("WORKDIR")
    assert workdir is not None
    models_in_image = (
        PurePosixPath(workdir.value[0])
        / Path(config.run.models_dir).relative_to(REPO_ROOT).as_posix()
    )
    mounts = _mounts(trainer)
    api_source = _mounts(services["api"])["/models"][0]
    assert mounts[str(models_in_image)] == (api_source, "rw")
    data = PurePosixPath(config.data.path)
    datasets = [t for t in mounts if PurePosixPath(t) in data.parents]
    assert datasets and mounts[datasets[0]][1] == "ro", f"no read-only mount holds {data}"


def test_build_targets_are_dockerfile_stages() -> None:
    stages = read_stages(DOCKERFILE)
    for name, service in load_yaml(COMPOSE)["services"].items():
        if "build" in service:
            assert service["build"]["target"] in stages, f"{name}: unknown build target"


def test_scale_override_runs_replicas_behind_nginx_on_one_redis() -> None:
    scale = load_yaml(COMPOSE_SCALE)["services"]
    replicas = int(interpolate(str(scale["api"]["deploy"]["replicas"]), {}))
    assert replicas >= 2
    assert "ports" not in scale["api"]
    assert interpolate(compose_environment(scale["api"])["REDIS_URL"] or "", {})
    nginx = scale["nginx"]
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    assert [interpolate(p, {}).split(":")[0] for p in nginx["ports"]] == ["8000"]
    source = next(v.split(":")[0] for v in nginx["volumes"] if "nginx" in v)
    assert (REPO_ROOT / source).resolve() == NGINX_CONF


def test_nginx_proxies_to_every_api_replica_through_docker_dns() -> None:
    conf = NGINX_CONF.read_text(encoding="utf-8")
    scale = load_yaml(COMPOSE_SCALE)["services"]
    listen = re.search(r"^\s*listen\s+(\d+);", conf, re.MULTILINE)
    assert listen is not None
    container_port = interpolate(scale["nginx"]["ports"][0], {}).split(":")[1]
    assert listen.group(1) == container_port
    assert re.search(r"resolver\s+127\.0\.0\.11\b", conf), "use Docker's DNS to find replicas"
    assert "http://api:8000" in conf
