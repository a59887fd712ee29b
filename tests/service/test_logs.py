"""Operator logs: the access line, the request id, warnings and errors, JSON and text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.config import load_settings
from service.main import create_app
from service.store.base import StoreError
from tests.service.bundles import write_random_bundle

AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    write_random_bundle(tmp_path / "models")

    def make(**overrides: Any) -> FastAPI:
        settings = load_settings(
            bundle_path=tmp_path / "models",
            store_path=tmp_path / "store.sqlite3",
            allow_open_writes=True,
            api_key=None,
            REDIS_URL=None,
            **overrides,
        )
        return create_app(settings)

    return make


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every line the service wrote to stderr since the last call, each parsed as JSON."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "service.access"]


def test_one_json_access_line_per_request_with_the_client_request_id_echoed(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    response = client.post(
        "/recommend", json={"user_id": "u1", "k": 3}, headers={"X-Request-ID": "req-42.a"}
    )

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-42.a"
    lines = json_lines(capsys)
    assert len(lines) == 1
    (line,) = access_lines(lines)
    assert line["level"] == "INFO"
    assert line["request_id"] == "req-42.a"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/recommend", 200)
    assert line["model_version"] == "test-v1"
    assert isinstance(line["latency_ms"], float) and 0 < line["latency_ms"] < 60_000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|\+00:00)", line["time"])
    assert line["message"].startswith("POST /recommend 200 ")


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "semi;colon"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(
    client: TestClient, capsys: pytest.CaptureFixture[str], sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    capsys.readouterr()

    first = client.get("/healthz", headers=headers)
    second = client.get("/healthz", headers=headers)

    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    assert ids[0] != ids[1]
    assert [line["request_id"] for line in access_lines(json_lines(capsys))] == ids


def test_a_client_error_logs_one_line_and_no_traceback(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    bad_body = client.post("/recommend", json={"user_id": "u1", "k": -1})
    unknown_item = client.post("/interactions", json={"user_id": "u1", "item_ids": ["nope"]})
    unknown_path = client.get("/no/such/path")

    assert [r.status_code for r in (bad_body, unknown_item, unknown_path)] == [422, 422, 404]
    lines = json_lines(capsys)
    assert [(line["path"], line["status"]) for line in lines] == [
        ("/recommend", 422),
        ("/interactions", 422),
        ("/no/such/path", 404),
    ]
    assert all(line["level"] == "INFO" and "exc_info" not in line for line in lines)


def test_an_unhandled_error_is_one_error_line_with_its_traceback_and_a_500(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app()

    def broken() -> None:
        raise RuntimeError("the disk is on fire")

    app.add_api_route("/broken", broken)
    with TestClient(app) as client:
        capsys.readouterr()
        response = client.get("/broken", headers={"X-Request-ID": "fire-1"})
        raw = capsys.readouterr().err
        exposition = client.get("/metrics").text

    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error", "request_id": "fire-1"}
    assert response.headers["X-Request-ID"] == "fire-1"
    lines = [json.loads(line) for line in raw.splitlines()]
    assert len(lines) == 2, "one line for the error, one for the request"
    error, access = lines
    assert error["level"] == "ERROR" and error["request_id"] == "fire-1"
    assert "unhandled error in GET /broken" in error["message"]
    assert "Traceback" in error["exc_info"] and "the disk is on fire" in error["exc_info"]
    assert (access["status"], access["level"], access["request_id"]) == (500, "ERROR", "fire-1")
    assert (
        'promptmm_http_request_duration_seconds_count{endpoint="/broken",method="GET",'
        'status="500"} 1.0'
    ) in exposition


def test_a_warning_logged_in_a_worker_thread_carries_the_request_id(
    client: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> bool:
        raise StoreError("connection refused")

    monkeypatch.setattr(client.app.state.store, "ping", unreachable)  # type: ignore[attr-defined]
    capsys.readouterr()

    response = client.get("/readyz", headers={"X-Request-ID": "ready-7"})

    assert response.status_code == 503
    warning, access = json_lines(capsys)
    assert warning["level"] == "WARNING" and warning["logger"] == "service.routes.ops"
    assert "connection refused" in warning["message"]
    assert warning["request_id"] == access["request_id"] == "ready-7"


def test_plain_text_lines_by_setting(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(make_app(log_format="text")) as client:
        capsys.readouterr()
        client.post("/recommend", json={"user_id": "u1", "k": 2}, headers={"X-Request-ID": "t-1"})
        lines = capsys.readouterr().err.splitlines()

    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO service\.access \[t-1\] "
        r"POST /recommend 200 \d+\.\d{3} ms test-v1",
        lines[0],
    ), lines[0]


def test_the_access_log_can_be_switched_off_and_the_id_is_still_echoed(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(make_app(access_log=False)) as client:
        capsys.readouterr()
        response = client.get("/healthz", headers={"X-Request-ID": "quiet"})
        assert capsys.readouterr().err == ""

    assert response.headers["X-Request-ID"] == "quiet"


def test_a_second_app_replaces_the_handler_instead_of_doubling_lines(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    make_app()
    with TestClient(make_app()) as client:
        capsys.readouterr()
        client.get("/healthz")
        assert len(json_lines(capsys)) == 1
