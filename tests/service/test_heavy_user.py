"""Heavy but legal writes: the service keeps answering while they are applied (not timed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from bundle import fold_in_user, read_bundle
from service.config import load_settings
from service.main import create_app
from tests.service.bundles import API_KEY, AUTH, write_random_bundle


def test_the_service_keeps_answering_while_a_heavy_batch_is_applied(tmp_path: Path) -> None:
    write_random_bundle(
        tmp_path / "models", n_users=300, n_items=2000, dim=32, items_per_user=(5, 30)
    )
    settings = load_settings(
        bundle_path=tmp_path / "models",
        store_path=tmp_path / "store.sqlite3",
        api_key=API_KEY,
        REDIS_URL=None,
    )
    bundle = read_bundle(settings.bundle_path)
    rng = np.random.default_rng(0)
    posted = {
        str(user): [f"i{item}" for item in rng.choice(bundle.n_items, 200, replace=False)]
        for user in range(256)
    }
    with TestClient(create_app(settings)) as client:
        state = client.app.state  # type: ignore[attr-defined]
        events = [{"user_id": user, "item_ids": items} for user, items in posted.items()]

        response = client.post("/interactions/batch", json={"events": events}, headers=AUTH)

        assert response.status_code == 200 and response.json()["accepted"] == 256 * 200
        online, store = state.recommender._online, state.store
        answered_behind = 0
        while online.revision < store.latest_revision():
            assert client.post("/recommend", json={"user_id": "7", "k": 20}).status_code == 200
            assert client.get("/healthz").status_code == 200
            answered_behind += 1
        assert answered_behind > 0, "the batch was applied before the first request"

        answer = client.post("/recommend", json={"user_id": "3", "k": 50}).json()
        assert not {entry["item_id"] for entry in answer["items"]} & set(posted["3"])
        assert bundle.user_ego is not None and bundle.item_layers is not None
        for user in ("0", "255"):
            items = np.union1d(
                bundle.seen_items(int(user)), [int(item[1:]) for item in posted[user]]
            )
            expected = fold_in_user(
                bundle.user_ego[int(user)], bundle.item_layers, items, bundle.item_popularity()
            )
            served = state.recommender.user_vector(user)
            np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
