"""The Dockerfile: a slim non-root API image without torch, a GPU trainer target, and the
start command the integration tests run (read without a Docker engine)."""

from __future__ import annotations

import fnmatch
import shlex
import tomllib

import pytest

from bench.harness import SERVICE_COMMAND
from tests.deploy.dockerfile import Stage, parse_dockerfile, read_stages
from tests.deploy.files import DOCKERFILE, DOCKERIGNORE, REPO_ROOT

API_PORT = 8000


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return read_stages(DOCKERFILE)


def _pip_installs(stage: Stage) -> list[list[str]]:
    """The argument lists of every ``pip install`` in the stage's RUN instructions."""
    installs = []
    for ins in stage.all("RUN"):
        lexer = shlex.shlex(ins.args, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:
            if token in (";", "&&", "||", "|"):
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:
            if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
                installs.append(words[words.index("install") + 1 :])
    return installs


def _copy_sources(stage: Stage) -> list[str]:
    sources = []
    for ins in stage.all("COPY"):
        words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
        sources += words[:-1]
    return sources


def test_api_is_the_default_target_on_a_slim_python(stages: dict[str, Stage]) -> None:
    assert list(stages)[-1] == "api", "a plain `docker build .` must build the API"
    assert stages["api"].base == "python:3.11-slim"
    assert stages["builder"].base == stages["api"].base, "the venv must match the runtime"


def test_api_runs_as_a_numeric_non_root_user(stages: dict[str, Stage]) -> None:
    for name in ("api", "trainer"):
        user = stages[name].last("USER")
        assert user is not None, f"stage {name} has no USER"
        uid = user.args.split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"stage {name}: USER {user.args} must be non-root"


def test_api_installs_only_the_service_extra(stages: dict[str, Stage]) -> None:
    installs = _pip_installs(stages["builder"])
    assert installs == [[".[service]"]]
    assert not _pip_installs(stages["api"]), "the runtime stage installs nothing itself"
    copied = _copy_sources(stages["builder"]) + _copy_sources(stages["api"])
    assert not [src for src in copied if src.rstrip("/") in ("training", "configs", ".")]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    service_extra = pyproject["project"]["optional-dependencies"]["service"]
    assert not [dep for dep in service_extra if dep.lower().startswith(("torch", "nvidia"))]


def test_api_copies_only_the_virtualenv_from_the_builder(stages: dict[str, Stage]) -> None:
    copies = stages["api"].all("COPY")
    assert [c.args for c in copies] == ["--from=builder /opt/venv /opt/venv"]
    assert "/opt/venv/bin" in stages["api"].env()["PATH"]


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
    assert _pip_installs(trainer) == [[".[training]"]]
    entrypoint, cmd = trainer.last("ENTRYPOINT"), trainer.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.exec_form() == ["python", "-m", "training"]
    args = cmd.exec_form()
    assert args[0] == "run"
    assert (REPO_ROOT / args[1]).is_file(), f"the trainer's config {args[1]} does not exist"
    assert trainer.last("WORKDIR") is not None
    assert (REPO_ROOT / "pyproject.toml").is_file()


def _dockerignore_allows(path: str, rules: list[str]) -> bool:
    allowed = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


def test_build_context_holds_what_is_copied_and_nothing_heavy(stages: dict[str, Stage]) -> None:
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = {src.rstrip("/") for stage in stages.values() for src in _copy_sources(stage)}
    sources = {src for src in sources if not src.startswith("/")}
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert _dockerignore_allows(source, rules), f".dockerignore leaves out COPY {source}"
    for heavy in (".git", ".venv", "models", "runs", "data", "tests", ".env"):
        assert not _dockerignore_allows(heavy, rules), f"{heavy} must not enter the build context"
