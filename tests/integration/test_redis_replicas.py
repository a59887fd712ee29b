"""Two service processes on one real Redis serve the same vector after a write to either."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import ServiceFactory
from tests.integration.helpers import (
    item_ids_of,
    load_bundle,
    post_interactions,
    recommend,
    users_with_history,
)

pytestmark = pytest.mark.integration


def test_replicas_agree_after_a_write_to_either(
    tiny_models_root: Path, service_factory: ServiceFactory, redis_url: str, redis_prefix: str
) -> None:
    bundle = load_bundle(tiny_models_root)
    user_id = bundle.user_ids[users_with_history(bundle, 1)[0]]
    first = service_factory(redis_url=redis_url, redis_prefix=redis_prefix).start()
    second = service_factory(redis_url=redis_url, redis_prefix=redis_prefix).start()
    with first.client() as a, second.client() as b:
        assert recommend(a, user_id) == recommend(b, user_id)
        posted: list[str] = []
        for writer in (a, b):
            new_items = item_ids_of(recommend(writer, user_id))[:2]
            post_interactions(writer, user_id, new_items)
            posted += new_items
            from_a, from_b = recommend(a, user_id), recommend(b, user_id)
            assert item_ids_of(from_a) == item_ids_of(from_b)
            assert [e["score"] for e in from_a["items"]] == pytest.approx(
                [e["score"] for e in from_b["items"]], rel=1e-6, abs=1e-7
            )
            assert not set(item_ids_of(from_a)) & set(posted)
    first.stop()
    second.stop()
