"""Train (tiny, real CLI) -> export -> serve (uvicorn) -> recommend -> interact -> recommend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import ServiceFactory
from tests.integration.helpers import (
    item_ids_of,
    load_bundle,
    post_interactions,
    recommend,
    scores_of,
    train_item_ids,
    users_with_history,
)

pytestmark = pytest.mark.integration


def test_posted_items_change_the_next_recommendations_and_are_excluded(
    tiny_models_root: Path, service_factory: ServiceFactory
) -> None:
    bundle = load_bundle(tiny_models_root)
    user = users_with_history(bundle, 1)[0]
    user_id = bundle.user_ids[user]
    with service_factory().start() as service, service.client() as client:
        before = recommend(client, user_id, k=20)
        assert before["fallback"] is None
        assert before["model_version"] == bundle.model_version
        assert len(before["items"]) == 20
        assert not set(item_ids_of(before)) & train_item_ids(bundle, user)
        scores = [entry["score"] for entry in before["items"]]
        assert scores == sorted(scores, reverse=True)

        posted = item_ids_of(before)[:3]
        ack = post_interactions(client, user_id, posted)
        assert ack["accepted"] == 3
        assert ack["model_version"] == bundle.model_version

        after = recommend(client, user_id, k=20)
        assert len(after["items"]) == 20
        assert not set(item_ids_of(after)) & set(posted)
        assert not set(item_ids_of(after)) & train_item_ids(bundle, user)
        old, new = scores_of(before), scores_of(after)
        common = set(old) & set(new)
        assert common, "no item kept between the two lists: cannot compare scores"
        assert any(abs(old[item] - new[item]) > 1e-6 for item in common), (
            "the user's vector did not move after the interactions were posted"
        )


def test_a_new_user_folds_in_from_their_first_interactions(
    tiny_models_root: Path, service_factory: ServiceFactory
) -> None:
    bundle = load_bundle(tiny_models_root)
    user_id = "integration-new-user"
    assert user_id not in bundle.user_ids
    with service_factory().start() as service, service.client() as client:
        cold = recommend(client, user_id, k=10)
        assert cold["fallback"] == "popular"
        assert len(cold["items"]) == 10

        posted = item_ids_of(cold)[:2]
        post_interactions(client, user_id, posted)

        warm = recommend(client, user_id, k=10)
        assert warm["fallback"] is None
        assert len(warm["items"]) == 10
        assert not set(item_ids_of(warm)) & set(posted)
