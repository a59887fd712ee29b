"""`docker-compose config` over the compose files: the real Compose parser and schema,
which need no Docker engine. Runs with Debian's docker-compose (v1.29) and, where the
plugin is installed, Compose v2 (`docker compose`); skips when neither is there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import COMPOSE, COMPOSE_SCALE, REPO_ROOT

pytestmark = pytest.mark.integration

INSTALL_HINT = (
    "no Compose CLI found: `apt-get install -y docker-compose` (Debian, v1.29) or the Docker "
    "Compose v2 plugin validates the compose files without a Docker engine"
)


def _compose_clis() -> list[list[str]]:
    clis = []
    if shutil.which("docker-compose"):
        clis.append(["docker-compose"])
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            clis.append([docker, "compose"])
    return clis


CLIS = _compose_clis()


@pytest.fixture(params=CLIS or [None], ids=lambda cli: " ".join(cli or ["none"]))
def compose(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    cli = request.param
    if cli is None:
        pytest.skip(INSTALL_HINT)
    env_file = tmp_path / "empty.env"
    env_file.write_text("", encoding="utf-8")

    def run(*files: Path, api_key: str | None = "cli-test-key") -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
        if api_key is not None:
            env["PROMPTMM_API_KEY"] = api_key
        args = [*cli, "--env-file", str(env_file), "--profile", "train"]
        for path in files:
            args += ["-f", str(path)]
        return subprocess.run(
            [*args, "config"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    return run


def _services(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def _published(service: dict[str, Any]) -> list[str]:
    return [str(port["published"]) for port in service.get("ports", [])]


def test_base_file_is_valid(compose: Any) -> None:
    services = _services(compose(COMPOSE))
    assert set(services) == {"redis", "api", "trainer"}
    assert services["api"]["environment"]["PROMPTMM_API_KEY"] == "cli-test-key"
    assert _published(services["api"]) == []


def test_plain_up_loads_the_override_and_publishes_the_api(compose: Any) -> None:
    services = _services(compose())
    assert _published(services["api"]) == ["8000"]


def test_scale_override_is_valid(compose: Any) -> None:
    services = _services(compose(COMPOSE, COMPOSE_SCALE))
    assert set(services) == {"redis", "api", "trainer", "nginx"}
    assert int(services["api"]["deploy"]["replicas"]) == 3
    assert _published(services["api"]) == []
    assert _published(services["nginx"]) == ["8000"]


def test_missing_api_key_is_refused(compose: Any) -> None:
    result = compose(COMPOSE, api_key=None)
    assert result.returncode != 0
    assert "PROMPTMM_API_KEY" in result.stderr
