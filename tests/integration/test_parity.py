"""The service's top-20 equals the offline evaluator's top-20 on the same bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bundle import Bundle
from tests.integration.conftest import ServiceFactory
from tests.integration.helpers import item_ids_of, load_bundle, users_with_history
from training.evaluate import topk_items

pytestmark = pytest.mark.integration

N_USERS = 100
K = 20


def _offline_topk(bundle: Bundle, users: list[int]) -> list[list[str]]:
    train = sp.csr_matrix(
        (
            np.ones(bundle.train_indices.shape[0], dtype=np.float32),
            bundle.train_indices,
            bundle.train_indptr,
        ),
        shape=(bundle.n_users, bundle.n_items),
    )
    ranked = topk_items(
        torch.tensor(bundle.user_embeddings),
        torch.tensor(bundle.item_embeddings),
        torch.tensor(users, dtype=torch.long),
        [train],
        K,
    )
    return [[bundle.item_ids[int(item)] for item in row] for row in ranked.tolist()]


def test_service_top20_equals_the_offline_evaluator(
    tiny_models_root: Path, service_factory: ServiceFactory
) -> None:
    bundle = load_bundle(tiny_models_root)
    users = users_with_history(bundle, N_USERS)
    expected = _offline_topk(bundle, users)
    requests = [{"user_id": bundle.user_ids[u], "k": K, "exclude_seen": True} for u in users]
    with service_factory().start() as service, service.client() as client:
        response = client.post("/recommend/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["user_id"] for result in results] == [bundle.user_ids[u] for u in users]
    mismatches = {
        result["user_id"]: (item_ids_of(result), offline)
        for result, offline in zip(results, expected, strict=True)
        if item_ids_of(result) != offline
    }
    example = next(iter(mismatches.items()), None)
    assert not mismatches, f"{len(mismatches)} of {N_USERS} users differ, e.g. {example}"
