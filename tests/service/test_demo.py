"""The demo routes: off by default, the page, titles, pictures (catalog ids only, no traversal).

The page's behaviour in a browser is tested in ``tests/integration/test_demo_browser.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bundle import write_bundle
from service.config import load_settings
from service.demo import DemoFileError
from service.main import create_app
from tests.service.bundles import random_bundle

PNG = b"\x89PNG\r\n\x1a\n fake picture bytes of "
AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """Apps on a random bundle whose catalog also holds the odd id ``../secret``."""
    bundle = random_bundle()
    ids = [*bundle.item_ids[:-1], "../secret"]
    write_bundle(dataclasses.replace(bundle, item_ids=ids), tmp_path / "models")

    def make(**overrides: Any) -> FastAPI:
        return create_app(
            load_settings(
                bundle_path=tmp_path / "models",
                store_path=tmp_path / "store.sqlite3",
                allow_open_writes=True,
                api_key=None,
                REDIS_URL=None,
                log_level="WARNING",
                **overrides,
            )
        )

    return make


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Pictures for i0, i1 (upper-case suffix) and zzz (not in the catalog); a file outside
    the folder, a link to it and a subfolder named like pictures of i2 and i3."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "i0.png").write_bytes(PNG + b"i0")
    (folder / "i1.JPG").write_bytes(PNG + b"i1")
    (folder / "zzz.png").write_bytes(PNG + b"zzz")
    (folder / "notes.txt").write_text("not a picture")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (folder / "i2.png").symlink_to(tmp_path / "secret.png")
    (folder / "i3.png").mkdir()
    return folder


@pytest.fixture
def titles(tmp_path: Path) -> Path:
    path = tmp_path / "items.jsonl"
    rows = [{"itemID": "i0", "title": "The First"}, {"itemID": "i1", "title": "Second <b>"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "\n")
    return path


@pytest.fixture
def client(make_app: AppFactory, images: Path, titles: Path) -> Iterator[TestClient]:
    app = make_app(demo=True, demo_images=images, demo_titles=titles, demo_titles_id_field="itemID")
    with TestClient(app) as test_client:
        yield test_client


def test_the_demo_is_off_by_default(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        assert client.app.state.settings.demo is False  # type: ignore[attr-defined]
        for path in ("/demo", "/demo/demo.js", "/demo/users", "/demo/images/i0"):
            assert client.get(path).status_code == 404, path


def test_the_page_and_its_assets_come_from_this_origin_only(client: TestClient) -> None:
    page = client.get("/demo")
    script = client.get("/demo/demo.js")
    style = client.get("/demo/demo.css")
    icon = client.get("/demo/favicon.svg")

    assert page.status_code == script.status_code == style.status_code == icon.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert icon.headers["content-type"] == "image/svg+xml"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    for text in (page.text, script.text, style.text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert '<script src="/demo/demo.js"' in page.text
    assert '<section id="add-item" hidden>' in page.text


def test_users_lists_the_first_bundle_users_within_a_bound(client: TestClient) -> None:
    assert client.get("/demo/users", params={"limit": 3}).json() == {"users": ["0", "1", "2"]}
    assert len(client.get("/demo/users").json()["users"]) == 20
    too_many = client.get("/demo/users", params={"limit": 101})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["query", "limit"]


def test_items_give_titles_and_picture_urls_where_there_are_some(client: TestClient) -> None:
    response = client.get("/demo/items", params={"item_id": ["i0", "i1", "i5", "../secret"]})

    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {"item_id": "i0", "title": "The First", "image": "/demo/images/i0"},
            {"item_id": "i1", "title": "Second <b>", "image": "/demo/images/i1"},
            {"item_id": "i5", "title": None, "image": None},
            {"item_id": "../secret", "title": None, "image": None},
        ]
    }


def test_items_refuse_unknown_ids_and_too_many_ids(make_app: AppFactory) -> None:
    with TestClient(make_app(demo=True, max_k=2)) as client:
        unknown = client.get("/demo/items", params={"item_id": ["i0", "nope"]})
        too_many = client.get("/demo/items", params={"item_id": ["i0", "i1", "i2"]})
        none = client.get("/demo/items")

    assert unknown.status_code == 422
    assert "['nope']" in unknown.json()["detail"][0]["msg"]
    assert too_many.status_code == 422
    assert "max_k=2" in too_many.json()["detail"][0]["msg"]
    assert none.status_code == 422


def test_a_catalog_items_picture_is_served_with_its_type(client: TestClient) -> None:
    png = client.get("/demo/images/i0")
    jpeg = client.get("/demo/images/i1")

    assert png.status_code == 200 and png.content == PNG + b"i0"
    assert png.headers["content-type"] == "image/png"
    assert jpeg.status_code == 200 and jpeg.content == PNG + b"i1"
    assert jpeg.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    "path",
    [
        "/demo/images/i5",  # in the catalog, no picture
        "/demo/images/zzz",  # a picture, not in the catalog
        "/demo/images/i2",  # a link out of the folder
        "/demo/images/i3",  # a folder named like a picture
        "/demo/images/notes",
        "/demo/images/../secret",
        "/demo/images/..%2Fsecret",
        "/demo/images/%2E%2E%2Fsecret.png",
        "/demo/images/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/demo/images/%2Fetc%2Fpasswd",
        "/demo/images/i0%00.png",
        "/demo/images/",
    ],
)
def test_nothing_but_a_listed_picture_of_a_catalog_item_is_served(
    client: TestClient, path: str
) -> None:
    response = client.get(path)

    assert response.status_code == 404, path
    assert response.headers["content-type"] == "application/json"


def test_titles_by_the_default_id_field_and_integer_ids(
    make_app: AppFactory, tmp_path: Path
) -> None:
    path = tmp_path / "titles.jsonl"
    path.write_text('{"item_id": "i7", "title": "Seven"}\n{"item_id": 8, "title": "Eight"}\n')

    with TestClient(make_app(demo=True, demo_titles=path)) as client:
        titles = client.app.state.demo.titles  # type: ignore[attr-defined]

    assert titles == {"i7": "Seven", "8": "Eight"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"id": "i1", "title": "x"}', "line 2: no string or integer 'item_id'"),
        ('{"item_id": true, "title": "x"}', "line 2: no string or integer 'item_id'"),
        ('{"item_id": "i1", "title": 3}', "line 2: no string 'title'"),
    ],
)
def test_a_bad_titles_file_stops_the_start_naming_the_line(
    make_app: AppFactory, tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "titles.jsonl"
    path.write_text('{"item_id": "i0", "title": "ok"}\n' + line + "\n")

    with (
        pytest.raises(DemoFileError, match=message),
        TestClient(make_app(demo=True, demo_titles=path)),
    ):
        pass


def test_missing_demo_paths_are_refused_by_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="demo_images"):
        load_settings(allow_open_writes=True, demo_images=tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="demo_titles"):
        load_settings(allow_open_writes=True, demo_titles=tmp_path / "nowhere.jsonl")
