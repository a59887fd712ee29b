"""Every environment variable the deploy files set is a real setting (the tie to the code).

The valid names come from ``service.config.Settings.model_fields`` (``PROMPTMM_<FIELD>``
and each field's validation alias such as ``REDIS_URL``), so renaming a setting without
updating docker-compose.yml, deploy/.env.example and deploy/k8s fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import Settings, setting_env_names
from tests.deploy.dockerfile import read_stages
from tests.deploy.files import (
    COMPOSE,
    COMPOSE_FILES,
    DOCKERFILE,
    ENV_TEMPLATE,
    EnvUse,
    compose_env_uses,
    compose_environment,
    interpolate,
    interpolation_variables,
    k8s_documents,
    k8s_env_uses,
    load_yaml,
)
from tests.deploy.settings_env import (
    RUNTIME_ENV,
    env_problems,
    looks_like_setting,
    render_default,
)

# Settings whose commented example in the template is the value used in the containers
# (a container path, the compose Redis, the mounted models) rather than the service default.
CONTAINER_EXAMPLES = frozenset(
    {
        "PROMPTMM_STORE_PATH",
        "REDIS_URL",
        "PROMPTMM_MODELS_ROOT",
        "PROMPTMM_DEMO_TITLES",
        "PROMPTMM_DEMO_IMAGES",
    }
)
_ASSIGNMENT = re.compile(r"^(?P<commented>#)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def _template_blocks() -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in ENV_TEMPLATE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            blocks[-1].append(line.strip())
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _template_assignments() -> list[tuple[str, str, bool, list[str]]]:
    """(name, value, commented out, the block's comment lines) for each assignment."""
    found = []
    for block in _template_blocks():
        comments = [line for line in block if line.startswith("# ")]
        for line in block:
            match = _ASSIGNMENT.match(line)
            if match:
                found.append((match["name"], match["value"], bool(match["commented"]), comments))
    return found


def test_settings_env_names_follow_the_settings_class() -> None:
    names = setting_env_names()
    assert len(names) == len(Settings.model_fields)
    assert names["REDIS_URL"] == "redis_url"
    assert names["PROMPTMM_API_KEY"] == "api_key"
    assert "PROMPTMM_REDIS_URL" not in names


def test_every_deploy_env_var_is_a_real_setting() -> None:
    uses = [*compose_env_uses(), *k8s_env_uses()]
    api_names = {use.name for use in uses if use.role == "api"}
    assert {"REDIS_URL", "PROMPTMM_API_KEY", "PROMPTMM_BUNDLE_PATH"} <= api_names
    assert any(use.role == "trainer" for use in uses)
    assert env_problems(uses) == []


@pytest.mark.parametrize(
    ("use", "reason"),
    [
        (EnvUse("PROMPTMM_INDEX_TYPE", "hnsw", "made-up", "api"), "renamed setting"),
        (EnvUse("REDIS_HOST", "redis", "made-up", "api"), "not a setting"),
        (EnvUse("PROMPTMM_BUNDLE_PATH", "/m", "made-up", "trainer"), "service setting on trainer"),
        (EnvUse("PROMPTMM_MAX_KK", "5", "made-up", "other"), "typo in another service"),
    ],
)
def test_the_check_rejects_what_configures_nothing(use: EnvUse, reason: str) -> None:
    problems = env_problems([use])
    assert len(problems) == 1, reason
    assert use.name in problems[0]


def test_runtime_allow_list_cannot_hide_a_setting() -> None:
    assert not [name for name in RUNTIME_ENV if looks_like_setting(name)]


def test_compose_api_passes_every_setting_through() -> None:
    api = load_yaml(COMPOSE)["services"]["api"]
    assert set(compose_environment(api)) == set(setting_env_names())


def test_compose_api_defaults_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    api = load_yaml(COMPOSE)["services"]["api"]
    shell = {"PROMPTMM_API_KEY": "compose-key-0123456789"}
    env = {
        name: interpolate(value, shell)
        for name, value in compose_environment(api).items()
        if value is not None
    }
    settings = _settings_from(env, monkeypatch)
    assert settings.redis_url, "compose must run the API on its Redis service"
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "compose-key-0123456789"


def test_compose_refuses_to_start_without_an_api_key() -> None:
    api = load_yaml(COMPOSE)["services"]["api"]
    with pytest.raises(ValueError, match="PROMPTMM_API_KEY"):
        interpolate(compose_environment(api)["PROMPTMM_API_KEY"] or "", {})


def test_k8s_config_and_secret_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        use.name: use.value
        for use in k8s_env_uses()
        if use.role == "api" and use.value is not None and use.name not in RUNTIME_ENV
    }
    assert "PROMPTMM_API_KEY" in env and "REDIS_URL" in env
    settings = _settings_from(env, monkeypatch)
    assert settings.redis_url == env["REDIS_URL"]
    assert settings.bundle_path == Path(env["PROMPTMM_BUNDLE_PATH"])


def test_env_template_documents_every_setting_once_with_its_default() -> None:
    settings = setting_env_names()
    documented: dict[str, list[str]] = {}
    for name, value, commented, comments in _template_assignments():
        if name not in settings:
            continue
        assert name not in documented, f"{ENV_TEMPLATE.name}: {name} is documented twice"
        documented[name] = comments
        field = settings[name]
        description = Settings.model_fields[field].description or ""
        assert f"# {description}" in comments, f"{name}: description of Settings.{field} missing"
        default = render_default(field)
        assert f"# default: {default}" in comments, f"{name}: expected '# default: {default}'"
        if commented and name not in CONTAINER_EXAMPLES:
            assert value == default, f"{name}: the commented example should be the default"
    assert set(documented) == set(settings)


def test_env_template_set_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: value for name, value, commented, _ in _template_assignments() if not commented}
    assert env.get("PROMPTMM_API_KEY") == "", "the template must not ship a usable API key"
    env["PROMPTMM_API_KEY"] = "template-key-0123456789"
    settings_names = setting_env_names()
    settings = _settings_from(
        {name: value for name, value in env.items() if name in settings_names}, monkeypatch
    )
    assert settings.api_key is not None


def test_env_template_other_variables_are_exactly_the_compose_variables() -> None:
    settings = setting_env_names()
    used = set().union(*(interpolation_variables(load_yaml(path)) for path in COMPOSE_FILES))
    template = {name for name, *_ in _template_assignments()}
    assert template - set(settings) == used - set(settings)
    assert used & set(settings) <= template


def test_dockerfile_env_sets_only_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = read_stages(DOCKERFILE)
    uses = [
        EnvUse(name, value, f"Dockerfile stage {stage_name}", role)
        for stage_name, role in (("api", "api"), ("trainer", "trainer"))
        for name, value in stages[stage_name].env().items()
        if looks_like_setting(name)
    ]
    assert {use.name for use in uses if use.role == "api"} >= {"PROMPTMM_BUNDLE_PATH"}
    assert env_problems(uses) == []
    api_env = {use.name: use.value or "" for use in uses if use.role == "api"}
    settings = _settings_from({**api_env, "PROMPTMM_API_KEY": "image-key-0123456789"}, monkeypatch)
    assert settings.bundle_path.is_absolute()
    assert settings.store_path.is_absolute()


def test_k8s_documents_are_found() -> None:
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert {"ConfigMap", "Secret", "Deployment", "Job"} <= kinds
