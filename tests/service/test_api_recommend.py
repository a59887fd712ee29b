"""POST /recommend and /recommend/batch, against both stores and both index kinds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bundle import Bundle
from service.main import create_app
from tests.service.bundles import CONTRACT, contract_settings, top_k


@pytest.fixture(params=CONTRACT)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    settings = contract_settings(request, tmp_path, max_k=100, max_batch=4)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def recommend(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def ids(result: dict[str, Any]) -> list[str]:
    return [entry["item_id"] for entry in result["items"]]


def test_known_user_gets_the_exact_top_k_without_training_items(
    client: TestClient, bundle: Bundle
) -> None:
    for user in range(0, bundle.n_users, 7):
        result = recommend(client, user_id=str(user), k=10)

        seen = bundle.seen_items(user).tolist()
        assert result["fallback"] is None
        assert result["model_version"] == bundle.model_version
        assert ids(result) == top_k(bundle, bundle.user_embeddings[user], 10, seen)
        scores = [entry["score"] for entry in result["items"]]
        assert scores == sorted(scores, reverse=True)


def test_exclude_seen_false_ranks_the_whole_catalog(client: TestClient, bundle: Bundle) -> None:
    result = recommend(client, user_id="3", k=15, exclude_seen=False)

    assert ids(result) == top_k(bundle, bundle.user_embeddings[3], 15, [])


def test_exactly_k_items_whenever_the_catalog_has_k_unseen(
    client: TestClient, bundle: Bundle
) -> None:
    unseen = bundle.n_items - len(bundle.seen_items(5))

    assert len(ids(recommend(client, user_id="5", k=unseen))) == unseen
    everything = ids(recommend(client, user_id="5", k=100))
    assert len(everything) == unseen == len(set(everything))


def test_integer_user_id_is_read_as_its_decimal_string(client: TestClient) -> None:
    assert recommend(client, user_id=12, k=5) == recommend(client, user_id="12", k=5)


def test_unknown_user_gets_the_flagged_popularity_fallback(
    client: TestClient, bundle: Bundle
) -> None:
    result = recommend(client, user_id="stranger", k=5)

    popularity = bundle.item_popularity()
    expected = sorted(range(bundle.n_items), key=lambda item: (-popularity[item], item))[:5]
    assert result["fallback"] == "popular"
    assert ids(result) == [bundle.item_ids[item] for item in expected]
    assert [entry["score"] for entry in result["items"]] == [popularity[i] for i in expected]


def test_unknown_user_is_404_when_configured(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = contract_settings(request, tmp_path, ("sqlite", "exact"), unknown_user="404")
    with TestClient(create_app(settings)) as client:
        response = client.post("/recommend", json={"user_id": "stranger"})
        known = client.post("/recommend", json={"user_id": "1"})

    assert response.status_code == 404
    assert "stranger" in response.json()["detail"]
    assert known.status_code == 200


def test_batch_answers_each_request_like_the_single_endpoint(client: TestClient) -> None:
    requests = [
        {"user_id": "1", "k": 3},
        {"user_id": "stranger", "k": 2},
        {"user_id": 2, "k": 5, "exclude_seen": False},
    ]

    response = client.post("/recommend/batch", json={"requests": requests})

    assert response.status_code == 200
    results = response.json()["results"]
    assert results == [recommend(client, **single) for single in requests]
    assert [len(result["items"]) for result in results] == [3, 2, 5]


def detail_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    detail: list[dict[str, Any]] = response.json()["detail"]
    return detail


@pytest.mark.parametrize(
    ("body", "loc", "text"),
    [
        ({"user_id": "1", "k": 101}, ["body", "k"], "above the limit max_k=100"),
        ({"user_id": "1", "k": 0}, ["body", "k"], "greater than or equal to 1"),
        ({"user_id": "1", "k": "many"}, ["body", "k"], "valid integer"),
        ({"k": 3}, ["body", "user_id"], "Field required"),
        ({"user_id": ""}, ["body", "user_id"], "at least 1 character"),
        ({"user_id": "x" * 257}, ["body", "user_id"], "at most 256 characters"),
        ({"user_id": 1.5}, ["body", "user_id"], "valid string"),
        ({"user_id": True}, ["body", "user_id"], "valid string"),
        ({"user_id": "1", "exclude_seen": "maybe"}, ["body", "exclude_seen"], "valid boolean"),
        ({"user_id": "1", "colour": "red"}, ["body", "colour"], "Extra inputs"),
    ],
)
def test_bad_recommend_requests_are_422_naming_the_field(
    client: TestClient, body: dict[str, Any], loc: list[Any], text: str
) -> None:
    detail = detail_of(client.post("/recommend", json=body))

    assert detail[0]["loc"] == loc
    assert text in detail[0]["msg"]


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert detail_of(response)[0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("body", "loc", "text"),
    [
        (
            {"requests": [{"user_id": str(u)} for u in range(5)]},
            ["body", "requests"],
            "number of requests is 5, above the limit max_batch=4",
        ),
        ({"requests": []}, ["body", "requests"], "at least 1 item"),
        (
            {"requests": [{"user_id": "1"}, {"user_id": "2", "k": 500}]},
            ["body", "requests", 1, "k"],
            "above the limit max_k=100",
        ),
        ({"requests": [{"user_id": "1"}, {}]}, ["body", "requests", 1, "user_id"], "required"),
    ],
)
def test_bad_batch_requests_are_422_naming_the_bound(
    client: TestClient, body: dict[str, Any], loc: list[Any], text: str
) -> None:
    detail = detail_of(client.post("/recommend/batch", json=body))

    assert detail[0]["loc"] == loc
    assert text in detail[0]["msg"]
