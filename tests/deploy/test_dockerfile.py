"""What a real build does not check in the Dockerfile, read without a Docker engine: the
trainer stage (scripts/compose-smoke.sh builds only the API), the image's own HEALTHCHECK and
environment (compose overrides both) and the tie between its CMD and the integration tests.
The API image's contents, user and build context are checked by scripts/compose-smoke.sh."""

from __future__ import annotations

import pytest

from bench.harness import SERVICE_COMMAND
from tests.deploy.dockerfile import Stage, parse_dockerfile, read_stages
from tests.deploy.files import DOCKERFILE, REPO_ROOT

API_PORT = 8000


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return read_stages(DOCKERFILE)


def test_trainer_runs_as_a_numeric_non_root_user(stages: dict[str, Stage]) -> None:
    user = stages["trainer"].last("USER")
    assert user is not None, "the trainer stage has no USER"
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"trainer: USER {user.args} must be non-root"


def test_healthcheck_asks_readyz_with_python_only(stages: dict[str, Stage]) -> None:
    check = stages["api"].last("HEALTHCHECK")
    assert check is not None
    options, _, command = check.args.partition("CMD ")
    assert "--interval=" in options and "--start-period=" in options
    words = parse_dockerfile(f"FROM scratch\nCMD {command}")[0].instructions[0].exec_form()
    assert words[:2] == ["python", "-c"]
    assert f"127.0.0.1:{API_PORT}/readyz" in words[2]
    compile(words[2], "HEALTHCHECK", "exec")


def test_cmd_is_the_integration_tests_service_command(stages: dict[str, Stage]) -> None:
    cmd = stages["api"].last("CMD")
    assert cmd is not None
    assert stages["api"].last("ENTRYPOINT") is None
    assert tuple(cmd.exec_form()) == SERVICE_COMMAND
    expose = stages["api"].last("EXPOSE")
    assert expose is not None and expose.args == str(API_PORT)


def test_api_reads_the_bundle_and_store_from_volumes(stages: dict[str, Stage]) -> None:
    env = stages["api"].env()
    assert env["PROMPTMM_BUNDLE_PATH"].startswith("/models/")
    assert env["PROMPTMM_STORE_PATH"].startswith("/data/")
    volume = stages["api"].last("VOLUME")
    assert volume is not None and volume.exec_form() == ["/data"]


def test_trainer_runs_the_training_cli_with_torch(stages: dict[str, Stage]) -> None:
    trainer = stages["trainer"]
    installs = [ins.args for ins in trainer.all("RUN") if "pip install" in ins.args]
    assert len(installs) == 1 and 'pip install ".[training]"' in installs[0]
    entrypoint, cmd = trainer.last("ENTRYPOINT"), trainer.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.exec_form() == ["python", "-m", "training"]
    args = cmd.exec_form()
    assert args[0] == "run"
    assert (REPO_ROOT / args[1]).is_file(), f"the trainer's config {args[1]} does not exist"
    assert trainer.last("WORKDIR") is not None
