"""Ranking metrics on hand-made ranked lists (standard vs lineage NDCG)."""

from __future__ import annotations

import math

import pytest
import torch

from training.metrics import ranking_metrics

D1, D2, D3 = 1.0, 1 / math.log2(3), 1 / math.log2(4)  # discounts of ranks 0, 1, 2

# user A: hits at ranks 0 and 2, 3 target items
# user B: no hit, 1 target item
# user C: hit at rank 1, 1 target item
HITS = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
N_TARGET = torch.tensor([3, 1, 1])


def _close(values: torch.Tensor, expected: list[float]) -> None:
    assert values.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_recall_precision_hit_by_hand() -> None:
    m = ranking_metrics(HITS, N_TARGET, ks=(2, 4))
    _close(m["recall@2"], [1 / 3, 0, 1])
    _close(m["recall@4"], [2 / 3, 0, 1])
    _close(m["precision@2"], [1 / 2, 0, 1 / 2])
    _close(m["precision@4"], [2 / 4, 0, 1 / 4])
    _close(m["hit@2"], [1, 0, 1])
    _close(m["hit@4"], [1, 0, 1])


def test_standard_ndcg_by_hand() -> None:
    m = ranking_metrics(HITS, N_TARGET, ks=(2, 4), ndcg="standard")
    # A@2: DCG = D1; IDCG over min(2, 3) = 2 ideal hits = D1 + D2 -> 1 / 1.630930 = 0.613147
    # A@4: DCG = D1 + D3 = 1.5; IDCG over min(4, 3) = 3 = D1 + D2 + D3 = 2.130930 -> 0.703918
    # C@2 and C@4: DCG = D2; IDCG over 1 = D1 -> 0.630930
    _close(m["ndcg@2"], [D1 / (D1 + D2), 0, D2])
    _close(m["ndcg@4"], [(D1 + D3) / (D1 + D2 + D3), 0, D2])
    assert m["ndcg@2"][0].item() == pytest.approx(0.613147, rel=1e-5)
    assert m["ndcg@4"][0].item() == pytest.approx(0.703918, rel=1e-5)


def test_lineage_ndcg_by_hand() -> None:
    m = ranking_metrics(HITS, N_TARGET, ks=(2, 4), ndcg="lineage")
    # IDCG from the retrieved hits only.
    # A@2: 1 hit retrieved -> IDCG = D1 -> DCG/IDCG = 1
    # A@4: 2 hits retrieved -> IDCG = D1 + D2 -> 1.5 / 1.630930 = 0.919721
    # C: 1 hit retrieved -> IDCG = D1 -> D2 = 0.630930 (same as standard: one target item)
    _close(m["ndcg@2"], [1.0, 0, D2])
    _close(m["ndcg@4"], [(D1 + D3) / (D1 + D2), 0, D2])
    assert m["ndcg@4"][0].item() == pytest.approx(0.919721, rel=1e-5)
    # the lineage value is never below the standard one
    standard = ranking_metrics(HITS, N_TARGET, ks=(2, 4))
    for k in (2, 4):
        assert bool((m[f"ndcg@{k}"] >= standard[f"ndcg@{k}"] - 1e-7).all())


def test_more_targets_than_k_caps_ideal_at_k() -> None:
    # 5 targets, all 3 ranks hit at k=3: standard NDCG = 1 (ideal holds min(3, 5) hits)
    m = ranking_metrics(torch.ones(1, 3, dtype=torch.bool), torch.tensor([5]), ks=(3,))
    _close(m["ndcg@3"], [1.0])
    _close(m["recall@3"], [3 / 5])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ks": (5,)}, "ks"),
        ({"ks": (0,)}, "ks"),
        ({"ndcg": "inflated"}, "ndcg must be one of"),
        ({"n_target": torch.tensor([1, 0, 1])}, "at least one target"),
        ({"n_target": torch.tensor([1, 1])}, "n_target must be"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"hits": HITS, "n_target": N_TARGET, "ks": (2,)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ranking_metrics(**args)  # type: ignore[arg-type]
