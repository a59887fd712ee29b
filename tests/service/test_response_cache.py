"""The response cache: exact answers until the interaction log moves, on every replica."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.response_cache import ENTRY_OVERHEAD, Answer, ResponseCache
from tests.service.bundles import AUTH, CONTRACT, contract_settings
from tests.service.test_api_interactions import recommend


def answer(body: bytes) -> Answer:
    return Answer(body, fallback=False)


def room_for(n: int, body_bytes: int = 1) -> int:
    """A cache size holding exactly ``n`` answers of ``body_bytes`` each."""
    return n * (body_bytes + ENTRY_OVERHEAD)


def test_an_answer_is_kept_for_its_revision_only() -> None:
    cache = ResponseCache(room_for(4))

    assert cache.get("a", 3) is None
    cache.put("a", 3, answer(b"A"))
    assert cache.get("a", 3) == answer(b"A")
    assert cache.get("a", 4) is None
    assert len(cache) == 0
    assert cache.nbytes == 0
    cache.put("a", 3, answer(b"old"))
    assert cache.get("a", 4) is None


def test_an_older_revision_neither_reads_nor_clears() -> None:
    cache = ResponseCache(room_for(4))
    cache.get("a", 5)
    cache.put("a", 5, answer(b"A"))

    assert cache.get("a", 4) is None
    cache.put("b", 4, answer(b"B"))
    assert cache.get("a", 5) == answer(b"A")
    assert cache.get("b", 5) is None


def test_the_least_recently_used_answer_goes_first() -> None:
    cache = ResponseCache(room_for(2))
    cache.get("a", 0)
    cache.put("a", 0, answer(b"A"))
    cache.put("b", 0, answer(b"B"))
    assert cache.get("a", 0) == answer(b"A")
    cache.put("c", 0, answer(b"C"))

    assert cache.get("b", 0) is None
    assert cache.get("a", 0) == answer(b"A")
    assert cache.get("c", 0) == answer(b"C")
    assert (len(cache), cache.nbytes) == (2, room_for(2))


def test_the_bound_is_in_bytes() -> None:
    cache = ResponseCache(room_for(3, body_bytes=10))
    cache.get("small", 0)
    for key in ("x", "y", "z"):
        cache.put(key, 0, answer(b"s" * 10))

    cache.put("big", 0, answer(b"b" * 25))
    assert [cache.get(key, 0) is not None for key in ("x", "y", "z", "big")] == [
        False,
        False,
        True,
        True,
    ]
    cache.put("z", 0, answer(b"s" * 5))
    assert cache.nbytes == room_for(1, 25) + room_for(1, 5)
    cache.put("huge", 0, answer(b"h" * room_for(3, body_bytes=10)))
    assert cache.get("huge", 0) is None
    assert cache.get("big", 0) is not None


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size must be >= 1 byte, got 0"):
        ResponseCache(0)


@pytest.fixture(params=CONTRACT)
def apps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[TestClient]]:
    """Three apps on one bundle and one store: two replicas with the cache, one without."""
    with ExitStack() as stack:
        clients = [
            stack.enter_context(
                TestClient(create_app(contract_settings(request, tmp_path, **overrides)))
            )
            for overrides in ({}, {}, {"response_cache_mb": 0})
        ]
        yield clients


def cache_count(client: TestClient, result: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'promptmm_response_cache_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_repeated_request_is_answered_from_the_cache(apps: list[TestClient]) -> None:
    replica, _, uncached = apps

    first = recommend(replica, "3")
    second = recommend(replica, "3")

    assert second == first == recommend(uncached, "3")
    assert (cache_count(replica, "miss"), cache_count(replica, "hit")) == (1.0, 1.0)
    assert cache_count(uncached, "miss") == cache_count(uncached, "hit") == 0.0
    assert recommend(replica, "3", k=5) == {**first, "items": first["items"][:5]}
    assert cache_count(replica, "miss") == 2.0


def test_a_write_by_one_user_refreshes_every_replicas_cached_answers(
    apps: list[TestClient],
) -> None:
    writer, reader, uncached = apps
    for client in (writer, reader):
        recommend(client, "6")
    before = {client: recommend(client, "5") for client in (writer, reader)}
    assert before[writer] == before[reader] == recommend(uncached, "5")
    top_item = before[writer]["items"][0]["item_id"]

    response = writer.post(
        "/interactions", json={"user_id": "9", "item_ids": [top_item]}, headers=AUTH
    )
    assert response.status_code == 200, response.text

    fresh = recommend(uncached, "5")
    assert fresh != before[writer]
    for client in (reader, writer):
        assert recommend(client, "6") == recommend(uncached, "6")
        assert recommend(client, "5") == fresh


def test_an_unknown_users_cached_fallback_is_still_counted(apps: list[TestClient]) -> None:
    replica = apps[0]

    for _ in range(2):
        assert recommend(replica, "nobody")["fallback"] == "popular"

    fallbacks = [
        line
        for line in replica.get("/metrics").text.splitlines()
        if line.startswith("promptmm_fallback_total")
    ]
    assert fallbacks == ["promptmm_fallback_total 2.0"]


@pytest.mark.parametrize(
    ("overrides", "cached"),
    [({}, True), ({"response_cache_mb": 0}, False), ({"finetune_method": "bpr"}, False)],
)
def test_the_cache_is_off_when_sized_zero_or_with_bpr(
    request: pytest.FixtureRequest, tmp_path: Path, overrides: dict[str, Any], cached: bool
) -> None:
    settings = contract_settings(request, tmp_path, ("sqlite", "exact"), **overrides)
    with TestClient(create_app(settings)) as client:
        recommend(client, "1")
        recommend(client, "1")

        assert (client.app.state.recommender.responses is not None) is cached  # type: ignore[attr-defined]
        assert cache_count(client, "hit") == (1.0 if cached else 0.0)


def ask(client: TestClient, user_id: str, k: int, exclude_seen: bool) -> bytes:
    body = {"user_id": user_id, "k": k, "exclude_seen": exclude_seen}
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.content


def test_a_cached_service_answers_as_an_uncached_one_after_random_writes(
    apps: list[TestClient],
) -> None:
    writer, reader, uncached = apps
    rng = np.random.default_rng(0)
    users = [*map(str, range(10)), "newcomer"]
    queries = [
        (user, k, exclude) for user in users for k in (1, 5, 20) for exclude in (True, False)
    ]
    for _ in range(8):
        for user, k, exclude in queries:
            expected = ask(uncached, user, k, exclude)
            for client in (writer, reader):
                assert ask(client, user, k, exclude) == expected
        events = [
            {
                "user_id": str(rng.choice(users)),
                "item_ids": [f"i{item}" for item in rng.choice(80, size=int(rng.integers(1, 4)))],
            }
            for _ in range(int(rng.integers(1, 3)))
        ]
        response = writer.post("/interactions/batch", json={"events": events}, headers=AUTH)
        assert response.status_code == 200, response.text
    hits = cache_count(reader, "hit")
    assert hits > len(queries), "writes invalidated every answer: the cache is not precise"
