"""POST /interactions and /interactions/batch, against both stores and both index kinds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bundle import Bundle, fold_in_user
from service.main import create_app
from service.store.base import Store
from tests.service.bundles import AUTH, CONTRACT, contract_settings, top_k


@pytest.fixture(params=CONTRACT)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    settings = contract_settings(request, tmp_path, max_batch=3, max_items_per_event=4)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def store(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


def recommend(client: TestClient, user_id: str, k: int = 10) -> dict[str, Any]:
    response = client.post("/recommend", json={"user_id": user_id, "k": k})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def ids(result: dict[str, Any]) -> list[str]:
    return [entry["item_id"] for entry in result["items"]]


def served_vector(client: TestClient, user_id: str) -> np.ndarray | None:
    """The vector the app's recommender serves ``user_id`` with now."""
    vector: np.ndarray | None = client.app.state.recommender.user_vector(user_id)  # type: ignore[attr-defined]
    return vector


def post(client: TestClient, path: str, body: Any, headers: Any = AUTH) -> Any:
    return client.post(path, json=body, headers=headers)


def test_posted_items_change_the_next_recommendations_and_are_excluded(
    client: TestClient, bundle: Bundle, store: Store
) -> None:
    before = recommend(client, "4")
    posted = ids(before)[:3]

    response = post(client, "/interactions", {"user_id": "4", "item_ids": posted})

    assert response.status_code == 200
    assert response.json() == {"user_id": "4", "accepted": 3, "model_version": "test-v1"}
    assert store.seen("4") == set(posted)
    vector = served_vector(client, "4")
    assert vector is not None and not np.allclose(vector, bundle.user_embeddings[4])
    assert bundle.user_ego is not None and bundle.item_layers is not None
    positives = np.union1d(bundle.seen_items(4), [bundle.item_ids.index(i) for i in posted])
    folded = fold_in_user(
        bundle.user_ego[4], bundle.item_layers, positives, bundle.item_popularity()
    )
    np.testing.assert_allclose(vector, folded, rtol=1e-6)
    after = recommend(client, "4")
    assert not set(posted) & set(ids(after))
    assert len(ids(after)) == 10
    exclude = [*bundle.seen_items(4).tolist(), *(bundle.item_ids.index(i) for i in posted)]
    assert ids(after) == top_k(bundle, vector, 10, exclude)


def test_a_new_user_folds_in_from_its_first_interactions(
    client: TestClient, bundle: Bundle, store: Store
) -> None:
    assert recommend(client, "newcomer")["fallback"] == "popular"
    posted = ["i70", "i71"]

    response = post(client, "/interactions", {"user_id": "newcomer", "item_ids": posted})

    assert response.status_code == 200
    after = recommend(client, "newcomer", k=20)
    vector = served_vector(client, "newcomer")
    assert vector is not None
    assert after["fallback"] is None
    assert ids(after) == top_k(bundle, vector, 20, [70, 71])


def test_integer_ids_and_timestamps_are_accepted(client: TestClient, store: Store) -> None:
    body = {"user_id": 9, "item_ids": ["i1"], "timestamp": 1764158400.5}

    response = post(client, "/interactions", body)

    assert response.status_code == 200
    assert store.seen("9") == {"i1"}


def test_batch_writes_every_event_and_fine_tunes_every_user(
    client: TestClient, bundle: Bundle, store: Store
) -> None:
    events = [
        {"user_id": "1", "item_ids": ["i3"]},
        {"user_id": "2", "item_ids": ["i4", "i5"]},
        {"user_id": "1", "item_ids": ["i6"]},
    ]

    response = post(client, "/interactions/batch", {"events": events})

    assert response.status_code == 200
    assert response.json() == {"events": 3, "accepted": 4, "model_version": "test-v1"}
    assert store.seen("1") == {"i3", "i6"} and store.seen("2") == {"i4", "i5"}
    for user in (1, 2):
        vector = served_vector(client, str(user))
        assert vector is not None and not np.allclose(vector, bundle.user_embeddings[user])


def test_unknown_item_ids_are_422_listed_and_nothing_is_written(
    client: TestClient, bundle: Bundle, store: Store
) -> None:
    before = recommend(client, "6")

    response = post(client, "/interactions", {"user_id": "6", "item_ids": ["i1", "nope", "x9"]})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "item_ids"]
    assert "['nope', 'x9']" in detail[0]["msg"]
    assert detail[0]["ctx"] == {"unknown_item_ids": ["nope", "x9"]}
    assert store.seen("6") == set()
    np.testing.assert_array_equal(served_vector(client, "6"), bundle.user_embeddings[6])
    assert recommend(client, "6") == before


def test_batch_with_one_unknown_item_writes_nothing(client: TestClient, store: Store) -> None:
    events = [{"user_id": "7", "item_ids": ["i1"]}, {"user_id": "8", "item_ids": ["i2", "bad"]}]

    response = post(client, "/interactions/batch", {"events": events})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "events", 1, "item_ids"]
    assert "['bad']" in detail[0]["msg"]
    assert store.seen("7") == set() and store.seen("8") == set()


@pytest.mark.parametrize(
    ("body", "loc", "text"),
    [
        ({"user_id": "1", "item_ids": []}, ["body", "item_ids"], "at least 1 item"),
        (
            {"user_id": "1", "item_ids": ["i1", "i2", "i3", "i4", "i5"]},
            ["body", "item_ids"],
            "number of item_ids is 5, above the limit max_items_per_event=4",
        ),
        ({"user_id": "1"}, ["body", "item_ids"], "Field required"),
        ({"item_ids": ["i1"]}, ["body", "user_id"], "Field required"),
        ({"user_id": "1", "item_ids": "i1"}, ["body", "item_ids"], "valid list"),
        ({"user_id": "1", "item_ids": [""]}, ["body", "item_ids", 0], "at least 1 character"),
        ({"user_id": "1", "item_ids": ["i1"], "timestamp": -1}, ["body", "timestamp"], ">= 0"),
        (
            {"user_id": "1", "item_ids": ["i1"], "timestamp": "soon"},
            ["body", "timestamp"],
            "number",
        ),
        ({"user_id": "1", "item_ids": ["i1"], "extra": 1}, ["body", "extra"], "Extra inputs"),
    ],
)
def test_bad_events_are_422_naming_the_field(
    client: TestClient, store: Store, body: dict[str, Any], loc: list[Any], text: str
) -> None:
    response = post(client, "/interactions", body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == loc
    assert text in detail[0]["msg"].replace("greater than or equal to", ">=")
    assert store.seen("1") == set()


@pytest.mark.parametrize(
    ("events", "loc", "text"),
    [
        ([{"user_id": "1", "item_ids": ["i1"]}] * 4, ["body", "events"], "max_batch=3"),
        ([], ["body", "events"], "at least 1 item"),
        (
            [{"user_id": "1", "item_ids": ["i1"]}, {"user_id": "2", "item_ids": ["i1"] * 5}],
            ["body", "events", 1, "item_ids"],
            "above the limit max_items_per_event=4",
        ),
    ],
)
def test_bad_batches_are_422_naming_the_bound(
    client: TestClient, store: Store, events: list[Any], loc: list[Any], text: str
) -> None:
    response = post(client, "/interactions/batch", {"events": events})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == loc
    assert text in detail[0]["msg"]
    assert store.seen("1") == set()


@pytest.mark.parametrize("path", ["/interactions", "/interactions/batch"])
@pytest.mark.parametrize(
    ("headers", "text"),
    [({}, "missing X-API-Key header"), ({"X-API-Key": "wrong"}, "invalid X-API-Key")],
)
def test_writes_without_the_right_key_are_401_and_write_nothing(
    client: TestClient, store: Store, path: str, headers: dict[str, str], text: str
) -> None:
    event = {"user_id": "1", "item_ids": ["i1"]}
    body = {"events": [event]} if path.endswith("batch") else event

    response = post(client, path, body, headers=headers)

    assert response.status_code == 401
    assert response.json()["detail"] == text
    assert store.seen("1") == set()


def test_open_writes_need_no_key(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    settings = contract_settings(
        request, tmp_path, ("sqlite", "exact"), api_key=None, allow_open_writes=True
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/interactions", json={"user_id": "1", "item_ids": ["i1"]})

    assert response.status_code == 200
