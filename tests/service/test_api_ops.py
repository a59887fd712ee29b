"""Operations: health, readiness, metrics, reload, body limit, start-up refusal, OpenAPI."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bundle import fold_in_user
from service.main import create_app
from service.store.base import StoreError
from tests.service.bundles import AUTH, CONTRACT, contract_settings, write_random_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=CONTRACT)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    settings = contract_settings(request, tmp_path, max_body_bytes=2048)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def sqlite_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    settings = contract_settings(request, tmp_path, ("sqlite", "exact"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_healthz_and_readyz(client: TestClient) -> None:
    health = client.get("/healthz")
    ready = client.get("/readyz")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    store = "redis" if client.app.state.settings.redis_url else "sqlite"  # type: ignore[attr-defined]
    assert ready.json() == {"status": "ready", "model_version": "test-v1", "store": store}


def test_readyz_is_503_with_a_reason_when_the_store_does_not_answer(
    sqlite_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_client.app.state.store, "ping", lambda: False)  # type: ignore[attr-defined]

    response = sqlite_client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "store does not answer ping"}
    assert sqlite_client.get("/healthz").status_code == 200


def test_a_store_failure_is_503_and_the_reason_is_logged_not_answered(
    sqlite_client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreachable(*_args: object) -> None:
        raise StoreError("Redis at redis://:***@db.internal:6379/0 is unreachable")

    monkeypatch.setattr(sqlite_client.app.state.store, "latest_revision", unreachable)  # type: ignore[attr-defined]

    response = sqlite_client.post("/recommend", json={"user_id": "1"})

    assert response.status_code == 503
    assert response.json() == {"detail": "store unavailable (the reason is in the service's log)"}
    assert "db.internal" in caplog.text


def metric_lines(client: TestClient) -> list[str]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text.splitlines()


def test_metrics_expose_latency_finetune_model_and_index_size(client: TestClient) -> None:
    client.post("/recommend", json={"user_id": "1"})
    client.post("/recommend", json={"user_id": "stranger"})
    client.post("/interactions", json={"user_id": "1", "item_ids": ["i2", "i3"]}, headers=AUTH)
    client.post("/recommend", json={"user_id": "1"})
    client.get("/no-such-page")

    lines = metric_lines(client)

    kind = client.app.state.settings.index_kind  # type: ignore[attr-defined]
    expected = [
        'promptmm_http_request_duration_seconds_count{endpoint="/recommend",method="POST",'
        'status="200"} 3.0',
        'promptmm_http_request_duration_seconds_count{endpoint="/interactions",method="POST",'
        'status="200"} 1.0',
        'promptmm_http_request_duration_seconds_count{endpoint="unmatched",method="GET",'
        'status="404"} 1.0',
        "promptmm_finetune_duration_seconds_count 1.0",
        f'promptmm_model_info{{dataset="random",index_kind="{kind}",model_version="test-v1"}} 1.0',
        "promptmm_index_items 80.0",
        "promptmm_interactions_accepted_total 2.0",
        "promptmm_fallback_total 1.0",
    ]
    for line in expected:
        assert line in lines


def test_each_app_has_its_own_registry(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    first = contract_settings(request, tmp_path / "a", ("sqlite", "exact"))
    second = contract_settings(request, tmp_path / "b", ("sqlite", "exact"))
    with TestClient(create_app(first)) as one, TestClient(create_app(second)) as two:
        one.post("/recommend", json={"user_id": "1"})
        counted = 'promptmm_http_request_duration_seconds_count{endpoint="/recommend"'

        assert any(line.startswith(counted) for line in metric_lines(one))
        assert not any(line.startswith(counted) for line in metric_lines(two))


def test_reload_swaps_to_the_latest_version_and_refolds_users_lazily(client: TestClient) -> None:
    client.post("/interactions", json={"user_id": "3", "item_ids": ["i5"]}, headers=AUTH)
    write_random_bundle(client.app.state.settings.bundle_path, seed=1, version="test-v2")  # type: ignore[attr-defined]

    response = client.post("/admin/reload", headers=AUTH)

    assert response.status_code == 200
    assert response.json() == {"model_version": "test-v2", "previous_version": "test-v1"}
    result = client.post("/recommend", json={"user_id": "3", "k": 80}).json()
    assert result["model_version"] == "test-v2"
    assert "i5" not in [entry["item_id"] for entry in result["items"]]
    served = client.app.state.recommender  # type: ignore[attr-defined]
    new_bundle = served.bundle
    expected = fold_in_user(
        new_bundle.user_ego[3],
        new_bundle.item_layers,
        np.union1d(new_bundle.seen_items(3), [5]),
        new_bundle.item_popularity(),
    )
    np.testing.assert_allclose(served.user_vector("3"), expected, rtol=1e-6)
    assert 'model_version="test-v2"' in "\n".join(metric_lines(client))
    assert 'model_version="test-v1"' not in "\n".join(metric_lines(client))


def test_loaded_state_is_frozen_out_of_gc_and_a_reload_frees_the_old_model(
    sqlite_client: TestClient,
) -> None:
    state = sqlite_client.app.state  # type: ignore[attr-defined]
    old = weakref.ref(state.recommender)
    assert gc.get_freeze_count() > 0
    write_random_bundle(state.settings.bundle_path, seed=2, version="test-v2")

    assert sqlite_client.post("/admin/reload", headers=AUTH).status_code == 200

    assert old() is None, "the replaced model is still alive after the reload"
    assert state.recommender.model_version == "test-v2"
    gc.unfreeze()


def test_reload_of_a_bad_path_is_422_and_keeps_serving(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    response = sqlite_client.post(
        "/admin/reload", json={"path": str(tmp_path / "models" / "missing")}, headers=AUTH
    )

    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "path"] and "neither a bundle" in detail["msg"]
    assert sqlite_client.get("/readyz").json()["model_version"] == "test-v1"


def test_reload_to_an_explicit_version_directory(sqlite_client: TestClient, tmp_path: Path) -> None:
    other = write_random_bundle(tmp_path / "models" / "other", seed=3, version="other-v9")

    response = sqlite_client.post("/admin/reload", json={"path": str(other)}, headers=AUTH)

    assert response.status_code == 200
    assert response.json()["model_version"] == "other-v9"


def test_no_request_fails_during_reloads(sqlite_client: TestClient) -> None:
    root = sqlite_client.app.state.settings.bundle_path  # type: ignore[attr-defined]
    failures: list[Any] = []
    versions: set[str] = set()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            response = sqlite_client.post("/recommend", json={"user_id": "2", "k": 5})
            if response.status_code != 200 or len(response.json()["items"]) != 5:
                failures.append(response.text)
            else:
                versions.add(response.json()["model_version"])

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        for number in range(2, 6):
            write_random_bundle(root, seed=number, version=f"test-v{number}")
            assert sqlite_client.post("/admin/reload", headers=AUTH).status_code == 200
    finally:
        stop.set()
        for worker in workers:
            worker.join()

    assert failures == []
    assert "test-v5" in versions


@pytest.mark.parametrize(
    ("headers", "text"),
    [({}, "missing X-API-Key header"), ({"X-API-Key": "nope"}, "invalid X-API-Key")],
)
def test_admin_without_the_right_key_is_401(
    sqlite_client: TestClient, headers: dict[str, str], text: str
) -> None:
    response = sqlite_client.post("/admin/reload", headers=headers)

    assert response.status_code == 401
    assert response.json()["detail"] == text


def test_body_over_the_limit_is_413_by_content_length(client: TestClient) -> None:
    body = {"user_id": "1", "item_ids": ["i1"] * 1000}

    response = client.post("/interactions", json=body, headers=AUTH)

    assert response.status_code == 413
    assert response.json()["detail"] == "request body is larger than max_body_bytes=2048"
    assert client.app.state.store.seen("1") == set()  # type: ignore[attr-defined]


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    chunks = (b" " * 1000 for _ in range(5))

    response = client.post(
        "/recommend", content=chunks, headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert "max_body_bytes=2048" in response.json()["detail"]


def test_start_is_refused_without_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTMM_API_KEY", raising=False)
    monkeypatch.delenv("PROMPTMM_ALLOW_OPEN_WRITES", raising=False)

    with pytest.raises(ValidationError, match="PROMPTMM_API_KEY is not set"):
        create_app()


def test_openapi_carries_request_and_response_examples(sqlite_client: TestClient) -> None:
    spec = sqlite_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    recommend_body = spec["paths"]["/recommend"]["post"]["requestBody"]
    assert recommend_body["required"] is True
    assert recommend_body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendRequest"
    }

    for name in (
        "RecommendRequest",
        "RecommendResponse",
        "BatchRecommendRequest",
        "InteractionEvent",
        "InteractionResponse",
        "BatchInteractionRequest",
        "ReloadResponse",
    ):
        assert schemas[name]["examples"], name
    assert schemas["RecommendRequest"]["examples"][0]["user_id"] == "42"


def test_importing_the_app_loads_neither_torch_nor_training() -> None:
    code = (
        "import sys, service.main, service.__main__; "
        "bad = [m for m in ('torch', 'training') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
