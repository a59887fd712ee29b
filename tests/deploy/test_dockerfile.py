"""What a real build does not check in the Dockerfile, read without a Docker engine: the
trainer stage (scripts/compose-smoke.sh builds only the API), the image's own HEALTHCHECK and
environment (compose overrides both) and the tie between its CMD and the integration tests.
The API image's contents, user and build context are checked by scripts/compose-smoke.sh."""

from __future__ import annotations

import pytest

from bench.harness import SERVICE_COMMAND
from tests.deploy.dockerfile import Stage, read_stages
from tests.deploy.files import DOCKERFILE, REPO_ROOT

API_PORT = 8000


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return read_stages(DOCKERFILE)


def test_trainer_runs_as_a_numeric_non_root_user(stages: dict[str, Stage]) -> None:
    user = stages["trainer"].last("USER")
    assert user is not None, "the trainer stage has no USER"
    uid = user.value[0].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"trainer: USER {user.value[0]} must be non-root"


def test_healthcheck_asks_readyz_with_python_only(stages: dict[str, Stage]) -> None:
    check = stages["api"].last("HEALTHCHECK")
    assert check is not None
    options = " ".join(check.flags)
    assert "--interval=" in options and "--start-period=" in options
    assert check.json and check.value[0] == "CMD"
    words = check.value[1:]
    assert words[:2] == ("python", "-c")
    assert f"127.0.0.1:{API_PORT}/readyz" in words[2]
    compile(words[2], "HEALTHCHECK", "exec")


def test_cmd_is_the_integration_tests_service_command(stages: dict[str, Stage]) -> None:
    cmd = stages["api"].last("CMD")
    assert cmd is not None
    assert stages["api"].last("ENTRYPOINT") is None
    assert cmd.json and cmd.value == SERVICE_COMMAND
    expose = stages["api"].last("EXPOSE")
    assert expose is not None and expose.value == (str(API_PORT),)


def test_api_reads_the_bundle_and_store_from_volumes(stages: dict[str, Stage]) -> None:
    env = stages["api"].env()
    assert env["PROMPTMM_BUNDLE_PATH"].startswith("/models/")
    assert env["PROMPTMM_STORE_PATH"].startswith("/data/")
    volume = stages["api"].last("VOLUME")
    assert volume is not None and volume.json and volume.value == ("/data",)


def test_trainer_runs_the_training_cli_with_torch(stages: dict[str, Stage]) -> None:
    trainer = stages["trainer"]
    installs = [run.value[0] for run in trainer.all("RUN") if "pip install" in run.value[0]]
    assert len(installs) == 1 and 'pip install ".[training]"' in installs[0]
    entrypoint, cmd = trainer.last("ENTRYPOINT"), trainer.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.json and entrypoint.value == ("python", "-m", "training")
    assert cmd.json
    args = cmd.value
    assert args[0] == "run"
    assert (REPO_ROOT / args[1]).is_file(), f"the trainer's config {args[1]} does not exist"
    assert trainer.last("WORKDIR") is not None
