"""Where the deploy files are, how they are loaded, and the environment variables they set.

Shared by the deploy tests. Compose files are read as plain YAML (no Docker needed);
``interpolate`` applies Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``
rules so a test can see the values a plain ``docker compose up`` would use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE = REPO_ROOT / "docker-compose.yml"
COMPOSE_OVERRIDE = REPO_ROOT / "docker-compose.override.yml"
COMPOSE_SCALE = REPO_ROOT / "deploy" / "docker-compose.scale.yml"
COMPOSE_FILES = (COMPOSE, COMPOSE_OVERRIDE, COMPOSE_SCALE)
NGINX_CONF = REPO_ROOT / "deploy" / "nginx.conf"
ENV_TEMPLATE = REPO_ROOT / "deploy" / ".env.example"
K8S_DIR = REPO_ROOT / "deploy" / "k8s"

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_yaml(path: Path) -> dict[str, Any]:
    """One YAML document that must be a mapping."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top, got {type(data).__name__}")
    return data


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every non-empty document of every YAML file under deploy/k8s, with its file."""
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"{path}: a document is a {type(doc).__name__}, not a mapping")
            docs.append((path, doc))
    return docs


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` with Compose's variable syntax resolved against ``env``.

    Raises ValueError for ``${VAR:?message}`` (and ``${VAR?message}``) when the variable is
    missing, as Compose refuses to start then.
    """

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if missing else str(current)
        if op in (":?", "?") and missing:
            raise ValueError(f"${{{name}}} is required: {arg}")
        return "" if current is None else current

    return _INTERPOLATION.sub(replace, value)


def interpolation_variables(node: Any) -> set[str]:
    """Every variable name used as ``${NAME...}`` anywhere in a loaded YAML tree."""
    if isinstance(node, str):
        return {m.group("name") for m in _INTERPOLATION.finditer(node)}
    if isinstance(node, Mapping):
        return set().union(*(interpolation_variables(v) for v in node.values()), set())
    if isinstance(node, list):
        return set().union(*(interpolation_variables(v) for v in node), set())
    return set()


def compose_environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A Compose service's ``environment`` in either form (mapping or ``KEY=VALUE`` list);
    ``None`` marks a pass-through variable (taken from the shell or ``.env`` when set)."""
    raw = service.get("environment") or {}
    if isinstance(raw, Mapping):
        return {str(k): None if v is None else str(v) for k, v in raw.items()}
    env: dict[str, str | None] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        env[key] = value if sep else None
    return env


@dataclass(frozen=True)
class EnvUse:
    """One environment variable that a deploy file gives to a container."""

    name: str
    value: str | None
    where: str
    role: str  # "api" (read by service.config.Settings), "trainer" or "other"


COMPOSE_ROLES = {"api": "api", "trainer": "trainer"}
K8S_ROLES = {"ConfigMap": "api", "Secret": "api", "Deployment": "api", "Job": "trainer"}


def compose_env_uses() -> Iterator[EnvUse]:
    """Every variable each Compose file sets in a service's container."""
    for path in COMPOSE_FILES:
        for service_name, service in (load_yaml(path).get("services") or {}).items():
            for name, value in compose_environment(service).items():
                where = f"{path.relative_to(REPO_ROOT)}: services.{service_name}.environment"
                yield EnvUse(name, value, where, COMPOSE_ROLES.get(service_name, "other"))


def _pod_containers(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = doc.get("spec") or {}
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    pod = (template or {}).get("spec") or {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def k8s_env_uses() -> Iterator[EnvUse]:
    """Every variable the manifests set: ConfigMap/Secret keys and containers' ``env``."""
    for path, doc in k8s_documents():
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name", "")
        rel, role = path.relative_to(REPO_ROOT), K8S_ROLES.get(str(kind), "other")
        if kind in ("ConfigMap", "Secret"):
            for field in ("data", "stringData"):
                for key, value in (doc.get(field) or {}).items():
                    yield EnvUse(key, str(value), f"{rel}: {kind} {name}", role)
        for container in _pod_containers(doc):
            for item in container.get("env", []):
                where = f"{rel}: {kind} {name} container {container.get('name')}"
                value = item.get("value")
                yield EnvUse(item["name"], None if value is None else str(value), where, role)
