"""Kubernetes manifests under deploy/k8s: they parse, reference each other consistently, and
give the API probes and resource limits, Redis persistence and the training Job a GPU."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.deploy.dockerfile import read_stages
from tests.deploy.files import DOCKERFILE, K8S_DIR, REPO_ROOT, k8s_documents

NAMESPACE = "promptmm"
_QUANTITY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>m|Ki|Mi|Gi|Ti|k|M|G)?$")
_UNITS = {
    None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
}  # fmt: skip


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity (``500m``, ``2``, ``512Mi``) as a number."""
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2 or 512Mi")
    return float(match["number"]) * _UNITS[match["unit"]]


@pytest.fixture(scope="module")
def by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents()}


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(doc)["containers"]
    return container


def _claims(doc: dict[str, Any]) -> dict[str, str]:
    """mount path -> PVC name of a pod's persistentVolumeClaim volumes."""
    volumes = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in _pod(doc).get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    return {
        m["mountPath"]: volumes[m["name"]]
        for m in _container(doc).get("volumeMounts", [])
        if m["name"] in volumes
    }


def test_quantity_parser() -> None:
    assert quantity("500m") == 0.5
    assert quantity("2") == 2.0
    assert quantity("512Mi") == 512 * 2**20
    with pytest.raises(ValueError, match="quantity"):
        quantity("2 GB")


def test_every_manifest_parses_and_is_namespaced() -> None:
    docs = k8s_documents()
    assert {path.parent for path, _ in docs} >= {K8S_DIR}
    for path, doc in docs:
        where = f"{path.relative_to(REPO_ROOT)} {doc.get('kind')}"
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), where
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, where


def test_api_deployment_probes(by_kind: dict[tuple[str, str], dict[str, Any]]) -> None:
    api = _container(by_kind[("Deployment", "promptmm-api")])
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    stage = read_stages(DOCKERFILE)["api"]
    expose = stage.last("EXPOSE")
    assert expose is not None and ports["http"] == int(expose.value[0])
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert api[probe]["httpGet"]["port"] in ports, f"{probe} names an unknown port"


def test_api_resources_requests_within_limits(
    by_kind: dict[tuple[str, str], dict[str, Any]],
) -> None:
    api = _container(by_kind[("Deployment", "promptmm-api")])
    requests, limits = api["resources"]["requests"], api["resources"]["limits"]
    for resource in ("cpu", "memory"):
        assert quantity(requests[resource]) <= quantity(limits[resource]), resource
    threads = {e["name"]: e.get("value") for e in api.get("env", [])}.get("OMP_NUM_THREADS")
    assert threads is not None and int(threads) <= quantity(limits["cpu"])


def test_api_configuration_comes_from_configmap_and_secret(
    by_kind: dict[tuple[str, str], dict[str, Any]],
) -> None:
    api = _container(by_kind[("Deployment", "promptmm-api")])
    for source in api["envFrom"]:
        assert ("ConfigMap", source["configMapRef"]["name"]) in by_kind
    secret_refs = [e["valueFrom"]["secretKeyRef"] for e in api["env"] if "valueFrom" in e]
    assert secret_refs, "the API key must come from a Secret"
    for ref in secret_refs:
        secret = by_kind[("Secret", ref["name"])]
        assert ref["key"] in secret["stringData"]


def test_api_reads_the_bundle_from_the_models_claim(
    by_kind: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = by_kind[("Deployment", "promptmm-api")]
    config = by_kind[("ConfigMap", "promptmm-config")]["data"]
    bundle = PurePosixPath(config["PROMPTMM_BUNDLE_PATH"])
    claims = _claims(deployment)
    mount = next(m for m in claims if PurePosixPath(m) in bundle.parents)
    assert ("PersistentVolumeClaim", claims[mount]) in by_kind
    mounts = {m["mountPath"]: m for m in _container(deployment)["volumeMounts"]}
    assert mounts[mount].get("readOnly") is True
    assert _pod(deployment)["securityContext"]["runAsNonRoot"] is True


def test_api_service_selects_the_deployment(
    by_kind: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = by_kind[("Deployment", "promptmm-api")]
    service = by_kind[("Service", "promptmm-api")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in _container(deployment)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_redis_persists_an_append_only_file(
    by_kind: dict[tuple[str, str], dict[str, Any]],
) -> None:
    redis = by_kind[("StatefulSet", "promptmm-redis")]
    container = _container(redis)
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    data_dir = args[args.index("--dir") + 1]
    templates = {t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]}
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounted[data_dir] in templates
    assert "limits" in container["resources"]


def test_redis_url_points_at_the_redis_service(
    by_kind: dict[tuple[str, str], dict[str, Any]],
) -> None:
    url = by_kind[("ConfigMap", "promptmm-config")]["data"]["REDIS_URL"]
    match = re.fullmatch(r"redis://([\w.-]+):(\d+)/\d+", url)
    assert match is not None, url
    service = by_kind[("Service", match.group(1))]
    assert int(match.group(2)) in {p["port"] for p in service["spec"]["ports"]}
    redis = by_kind[("StatefulSet", "promptmm-redis")]
    assert redis["spec"]["serviceName"] == match.group(1)


def test_training_job_requests_a_gpu_and_writes_the_models_claim(
    by_kind: dict[tuple[str, str], dict[str, Any]],
) -> None:
    job = by_kind[("Job", "promptmm-train")]
    container = _container(job)
    assert quantity(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert _pod(job)["restartPolicy"] in ("Never", "OnFailure")
    assert container["args"][0] == "run" and (REPO_ROOT / container["args"][1]).is_file()
    api_claims = set(_claims(by_kind[("Deployment", "promptmm-api")]).values())
    job_claims = _claims(job)
    assert job_claims["/app/models"] in api_claims
