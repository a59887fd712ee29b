"""The environment variables that really configure something, derived from the code.

``service.config.Settings`` is the source of truth for the API: each field is read from
``<env_prefix><FIELD>`` or, when it has a validation alias, from that alias. Renaming a
field changes these names, so every deploy file that still uses the old name fails the
deploy tests.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.config import Settings, setting_env_names
from tests.deploy.files import EnvUse
from training.config import SHARED_DATASETS_ENV

# Variables read by the runtime rather than by a settings class; anything else must be a
# setting. Nothing here may look like a setting (PROMPTMM_ prefix or REDIS_URL).
RUNTIME_ENV = {
    "OMP_NUM_THREADS": "OpenMP threads of FAISS/BLAS: kept at the container's CPU limit",
    "OMP_WAIT_POLICY": "PASSIVE keeps idle torch threads from spinning (training)",
}
# Variables the training CLI reads (training/config.py).
TRAINER_ENV = frozenset({SHARED_DATASETS_ENV})


def looks_like_setting(name: str) -> bool:
    """Whether ``name`` is in the service's namespace (PROMPTMM_* or REDIS_URL)."""
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    return name.upper().startswith(prefix) or name.upper() == "REDIS_URL"


def env_problems(uses: Iterable[EnvUse]) -> list[str]:
    """One message per variable that configures nothing in the container it is given to."""
    settings = setting_env_names()
    problems: list[str] = []
    for use in uses:
        name = use.name.upper()
        if use.role == "api":
            ok = name in settings or name in RUNTIME_ENV
            expected = "a setting of service.config.Settings"
        elif use.role == "trainer":
            ok = name in TRAINER_ENV or name in RUNTIME_ENV
            expected = f"a variable the training CLI reads ({sorted(TRAINER_ENV)})"
        else:
            ok = not looks_like_setting(name) or name in settings
            expected = "a setting of service.config.Settings"
        if not ok:
            problems.append(
                f"{use.where}: {use.name} is not {expected}; settings are {sorted(settings)}"
            )
    return problems


def render_default(field_name: str) -> str:
    """A field's default as the env template writes it (``unset`` for None)."""
    info = Settings.model_fields[field_name]
    if info.is_required():
        return "required"
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
