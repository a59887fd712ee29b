"""Bad input found by probing the API: each is a precise 4xx (or a refused start), never a 500."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bench.harness import API_KEY as SERVICE_KEY
from bench.harness import ServiceProcess, clean_environ, free_port, local_command
from bundle.format import EMBEDDINGS, MANIFEST, _sha256
from service.config import load_settings
from service.main import create_app
from tests.service.bundles import AUTH, CONTRACT, contract_settings, write_random_bundle

JSON = {**AUTH, "content-type": "application/json"}
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
BODIES = [
    ("/recommend", '{{"user_id": "1", "k": {}}}'),
    ("/recommend", '{{"user_id": "1", "k": 3, "extra": [1, {}]}}'),
    ("/recommend/batch", '{{"requests": [{{"user_id": "1", "k": {}}}]}}'),
    ("/interactions", '{{"user_id": "1", "item_ids": ["i1"], "timestamp": {}}}'),
    ("/interactions/batch", '{{"events": [{{"user_id": "1", "item_ids": ["i1"], "x": {}}}]}}'),
    ("/admin/reload", '{{"path": {}}}'),
]


@pytest.fixture(params=CONTRACT[::2])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """A client of each store (exact index), that shows a 500 as a response."""
    settings = contract_settings(request, tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def logged_422s(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The 422s' log lines: each request's access line, carrying the reason."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "service.access" and getattr(record, "status", None) == 422
    ]


@pytest.mark.parametrize("token", NON_FINITE)
@pytest.mark.parametrize(("path", "template"), BODIES)
def test_a_non_finite_number_anywhere_is_a_422_naming_it_and_logged_once(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str, template: str, token: str
) -> None:
    body = template.format(token)
    caplog.set_level(logging.INFO, logger="service")

    response = client.post(path, content=body.encode(), headers=JSON)

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "json_invalid"
    assert f"{token} is not a finite number" in error["msg"]
    assert error["loc"] == ["body", body.index(token)]
    [line] = logged_422s(caplog)
    assert f"{token} is not a finite number" in line and "Traceback" not in caplog.text
    assert client.app.state.store.seen("1") == set()  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/recommend", "/recommend/batch", "/interactions"])
def test_a_body_that_is_not_utf8_is_a_422_naming_the_byte(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    body = {
        "/recommend": b'{"user_id": "\xff\xfe"}',
        "/recommend/batch": b'{"requests": [{"user_id": "\xff"}]}',
        "/interactions": b'{"user_id": "1", "item_ids": ["i\xc3"]}',
    }[path]
    caplog.set_level(logging.INFO, logger="service")

    response = client.post(path, content=body, headers=JSON)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    position = next(index for index, byte in enumerate(body) if byte > 127)
    assert error["loc"] == ["body", position]
    assert f"not UTF-8 (byte 0x{body[position]:02x} at position {position})" in error["msg"]
    [line] = logged_422s(caplog)
    assert "not UTF-8" in line


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/recommend", {"user_id": "1", "k": True}, ["body", "k"]),
        ("/recommend", {"user_id": "1", "k": 2.0}, ["body", "k"]),
        ("/recommend", {"user_id": "1", "k": "3"}, ["body", "k"]),
        ("/recommend", {"user_id": "1", "exclude_seen": "yes"}, ["body", "exclude_seen"]),
        ("/recommend", {"user_id": "1", "exclude_seen": 1}, ["body", "exclude_seen"]),
        ("/recommend", {"user_id": True}, ["body", "user_id"]),
        ("/recommend/batch", {"requests": [{"user_id": "1", "k": True}]}, None),
        ("/interactions", {"user_id": "1", "item_ids": ["i1"], "timestamp": True}, None),
        ("/interactions", {"user_id": "1", "item_ids": ["i1"], "timestamp": "5"}, None),
        ("/interactions", {"user_id": 1.5, "item_ids": ["i1"]}, ["body", "user_id"]),
        ("/interactions", {"user_id": "1", "item_ids": [False]}, ["body", "item_ids", 0]),
    ],
)
def test_values_are_not_coerced_across_types(
    client: TestClient, path: str, body: dict[str, Any], loc: list[str | int] | None
) -> None:
    response = client.post(path, json=body, headers=AUTH)

    assert response.status_code == 422, response.text
    expected = (
        loc
        or {
            "/recommend/batch": ["body", "requests", 0, "k"],
            "/interactions": ["body", "timestamp"],
        }[path]
    )
    assert [error["loc"] for error in response.json()["detail"]] == [expected]
    assert client.app.state.store.seen("1") == set()  # type: ignore[attr-defined]


def test_an_integer_id_is_still_read_as_its_decimal_string(client: TestClient) -> None:
    response = client.post("/recommend", json={"user_id": 1, "k": 2})

    assert response.status_code == 200 and response.json()["user_id"] == "1"


@pytest.mark.parametrize("path", ["/recommend/", "/interactions/", "/admin/reload/"])
def test_a_trailing_slash_is_404_not_a_redirect_to_the_clients_host(
    client: TestClient, path: str
) -> None:
    response = client.post(
        path,
        json={"user_id": "1"},
        headers={**AUTH, "host": "evil.example"},
        follow_redirects=False,
    )

    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize("length", [0, 8, 15])
def test_an_api_key_shorter_than_16_characters_is_refused(tmp_path: Path, length: int) -> None:
    with pytest.raises(ValidationError, match=f"PROMPTMM_API_KEY has {length} characters"):
        load_settings(bundle_path=tmp_path, api_key="k" * length, REDIS_URL=None)


def test_an_api_key_of_16_characters_is_taken(tmp_path: Path) -> None:
    settings = load_settings(bundle_path=tmp_path, api_key="k" * 16, REDIS_URL=None)

    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k" * 16


def corrupt_embeddings(bundle_dir: Path) -> None:
    """Flip a byte inside ``embeddings.npz`` and record the new checksum in the manifest."""
    path = bundle_dir / EMBEDDINGS
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    manifest["files"][EMBEDDINGS]["sha256"] = _sha256(path)
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))


def test_reload_of_a_corrupt_npz_whose_checksum_matches_is_422(
    client: TestClient, tmp_path: Path
) -> None:
    bad = write_random_bundle(tmp_path / "models", seed=4, version="test-v2")
    corrupt_embeddings(bad)

    response = client.post("/admin/reload", headers=AUTH)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "path"]
    assert error["msg"].startswith(f"{EMBEDDINGS}: unreadable (Bad CRC-32")
    assert client.get("/readyz").json()["model_version"] == "test-v1"


def test_a_corrupt_npz_at_start_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    corrupt_embeddings(write_random_bundle(tmp_path / "models"))
    env = {
        **clean_environ(),
        "PROMPTMM_API_KEY": SERVICE_KEY,
        "PROMPTMM_BUNDLE_PATH": str(tmp_path / "models"),
        "PROMPTMM_STORE_PATH": str(tmp_path / "store.sqlite3"),
    }

    result = subprocess.run(
        local_command(free_port()), env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "cannot start" in line]
    assert f"cannot start: {EMBEDDINGS}: unreadable (Bad CRC-32" in line


@pytest.fixture
def models(client: TestClient) -> Path:
    root: Path = client.app.state.settings.bundle_path  # type: ignore[attr-defined]
    return root


@pytest.mark.parametrize(
    "where", ["dotdot", "absolute", "symlink_dir", "symlink_latest_version", "root_itself_above"]
)
def test_reload_outside_the_models_root_is_422(
    client: TestClient, models: Path, tmp_path: Path, where: str
) -> None:
    outside = write_random_bundle(tmp_path / "outside", seed=5, version="evil-v1")
    path = {
        "dotdot": "../outside",
        "absolute": str(outside),
        "symlink_dir": "link",
        "symlink_latest_version": "linked-root",
        "root_itself_above": str(tmp_path),
    }[where]
    (models / "link").symlink_to(outside, target_is_directory=True)
    linked_root = models / "linked-root"
    linked_root.mkdir()
    (linked_root / "evil-v1").symlink_to(outside, target_is_directory=True)
    (linked_root / "LATEST").write_text("evil-v1\n")

    response = client.post("/admin/reload", json={"path": path}, headers=AUTH)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "path"] and "outside the models root" in error["msg"]
    assert client.get("/readyz").json()["model_version"] == "test-v1"


@pytest.mark.parametrize("path", ["a\u0000b", "x" * 5000])
def test_reload_of_an_unusable_path_is_422(client: TestClient, path: str) -> None:
    response = client.post("/admin/reload", json={"path": path}, headers=AUTH)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "path"] and "path cannot be read" in error["msg"]


def test_reload_of_a_path_relative_to_the_models_root(client: TestClient, models: Path) -> None:
    write_random_bundle(models / "next", seed=6, version="next-v1")

    response = client.post("/admin/reload", json={"path": "next"}, headers=AUTH)

    assert response.status_code == 200 and response.json()["model_version"] == "next-v1"


def test_the_models_root_setting_confines_reloads(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    allowed = write_random_bundle(tmp_path / "allowed", seed=7, version="allowed-v1")
    settings = contract_settings(
        request, tmp_path, ("sqlite", "exact"), models_root=tmp_path / "allowed"
    )
    with TestClient(create_app(settings)) as client:
        refused = client.post(
            "/admin/reload", json={"path": str(tmp_path / "models")}, headers=AUTH
        )
        taken = client.post("/admin/reload", json={"path": str(allowed)}, headers=AUTH)

    assert refused.status_code == 422 and taken.status_code == 200


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A real uvicorn process (the deployed command) with a 1 s head timeout."""
    root = tmp_path_factory.mktemp("served")
    write_random_bundle(root / "models")
    env = {
        "PROMPTMM_BUNDLE_PATH": str(root / "models"),
        "PROMPTMM_STORE_PATH": str(root / "store.sqlite3"),
        "PROMPTMM_HEADER_TIMEOUT_S": "1",
        "PROMPTMM_MAX_HEADER_BYTES": "8192",
    }
    with ServiceProcess(env, root / "service.log") as process:
        yield process


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        return sock.recv(4096)


def head(header_bytes: int) -> bytes:
    return (
        b"POST /recommend HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 15\r\nX-Pad: " + b"a" * header_bytes + b'\r\n\r\n{"user_id":"1"}'
    )


@pytest.mark.parametrize("pad", [10_000, 2_000_000])
def test_a_huge_header_is_431_from_the_served_process(served: ServiceProcess, pad: int) -> None:
    answer = exchange(served.port, head(pad))

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"max_header_bytes=8192" in answer


def test_a_header_under_the_limit_is_served(served: ServiceProcess) -> None:
    assert exchange(served.port, head(6000)).startswith(b"HTTP/1.1 200 ")


def test_a_head_sent_too_slowly_is_cut_off(served: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=0.25) as sock:
        sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\n")
        for _ in range(40):  # one byte every 0.25 s, for 10 s: far past the 1 s head timeout
            try:
                if sock.recv(100) == b"":
                    return
            except TimeoutError:
                pass
            try:
                sock.sendall(b"X")
            except OSError:
                return
    pytest.fail("the server kept a connection whose head never completed")


@pytest.mark.parametrize("path", ["/recommend", "/recommend/batch", "/interactions"])
def test_a_lone_surrogate_escape_is_a_422(client: TestClient, path: str) -> None:
    body = {
        "/recommend": '{"user_id": "a\\ud800"}',
        "/recommend/batch": '{"requests": [{"user_id": "\\udfff"}]}',
        "/interactions": '{"user_id": "1", "item_ids": ["\\ud800x"]}',
    }[path]

    response = client.post(path, content=body.encode(), headers=JSON)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert "lone UTF-16 surrogate" in error["msg"]


def test_a_surrogate_pair_is_a_character(client: TestClient) -> None:
    response = client.post("/recommend", content=b'{"user_id": "\\ud83d\\ude00"}', headers=JSON)

    assert response.status_code == 200 and response.json()["user_id"] == "\U0001f600"
