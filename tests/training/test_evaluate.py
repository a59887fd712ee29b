"""All-ranking evaluation against a brute-force numpy reference, with ties and masking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from training.evaluate import Evaluator, _masked_scores, evaluate, topk_items

N_USERS, N_ITEMS, DIM = 40, 30, 3


def _case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, sp.csr_matrix, sp.csr_matrix]:
    """Small-integer embeddings (exact float scores, many ties); disjoint train/test."""
    rng = np.random.default_rng(seed)
    users = torch.from_numpy(rng.integers(-2, 3, (N_USERS, DIM)).astype(np.float32))
    items = torch.from_numpy(rng.integers(-2, 3, (N_ITEMS, DIM)).astype(np.float32))
    split = rng.random((N_USERS, N_ITEMS))
    train = (split < 0.3).astype(np.float32)
    test = ((split >= 0.3) & (split < 0.4)).astype(np.float32)
    train[0, :] = 1.0
    train[0, :3] = 0.0  # user 0 has only 3 candidate items left
    test[0, :] = 0.0
    test[0, 1] = 1.0
    test[1, :] = 0.0  # user 1 has no target: skipped
    return users, items, sp.csr_matrix(train), sp.csr_matrix(test)


def _reference_ranking(scores: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Candidate items of one user: score descending, then item index ascending."""
    candidates = np.flatnonzero(~excluded)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


def _reference_metrics(
    users: torch.Tensor,
    items: torch.Tensor,
    target: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: tuple[int, ...],
    lineage: bool,
) -> dict[str, float]:
    scores = users.double().numpy() @ items.double().numpy().T
    target_d, excl_d = target.toarray() > 0, exclude.toarray() > 0
    sums: dict[str, float] = {}
    evaluated = [u for u in range(scores.shape[0]) if target_d[u].any()]
    for u in evaluated:
        ranking = _reference_ranking(scores[u], excl_d[u])
        n_target = int(target_d[u].sum())
        for k in ks:
            hits = [bool(target_d[u, i]) for i in ranking[:k]]
            n_hits = sum(hits)
            dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
            n_ideal = n_hits if lineage else min(k, n_target)
            idcg = sum(1 / math.log2(r + 2) for r in range(n_ideal))
            values = {
                "recall": n_hits / n_target,
                "ndcg": dcg / idcg if idcg > 0 else 0.0,
                "precision": n_hits / k,
                "hit": float(n_hits > 0),
            }
            for name, v in values.items():
                sums[f"{name}@{k}"] = sums.get(f"{name}@{k}", 0.0) + v
    result = {name: total / len(evaluated) for name, total in sums.items()}
    result["users"] = float(len(evaluated))
    return result


@pytest.mark.parametrize("ndcg", ["standard", "lineage"])
@pytest.mark.parametrize("chunk_size", [7, 2048])
def test_evaluate_equals_brute_force_reference(ndcg: str, chunk_size: int) -> None:
    users, items, train, test = _case()
    ks = (1, 5, 10)
    got = evaluate(users, items, test, [train], ks=ks, ndcg=ndcg, chunk_size=chunk_size)  # type: ignore[arg-type]
    expected = _reference_metrics(users, items, test, train, ks, lineage=ndcg == "lineage")
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert got["users"] <= N_USERS - 1  # user 1 has no target item


@pytest.mark.parametrize("chunk_size", [7, 2048])
def test_an_evaluator_prepared_once_scores_every_model_like_the_reference(chunk_size: int) -> None:
    _, _, train, test = _case(4)
    free = (train.toarray() == 0) & (test.toarray() == 0)
    valid = sp.csr_matrix((np.eye(N_USERS, N_ITEMS, dtype=bool) & free).astype(np.float32))
    evaluator = Evaluator(test, [train, valid], ks=(1, 5, 10), chunk_size=chunk_size)
    rng = np.random.default_rng(9)
    for _ in range(3):  # the masks on the device are reused across calls
        users = torch.from_numpy(rng.integers(-2, 3, (N_USERS, DIM)).astype(np.float32))
        items = torch.from_numpy(rng.integers(-2, 3, (N_ITEMS, DIM)).astype(np.float32))
        got = evaluator(users, items)
        expected = _reference_metrics(users, items, test, train + valid, (1, 5, 10), False)
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert got == evaluate(users, items, test, [train, valid], ks=(1, 5, 10))
    with pytest.raises(ValueError, match="split is \\(40, 30\\)"):
        evaluator(users[:5], items)


def test_topk_items_ranks_like_the_reference_with_ties_by_index() -> None:
    users, items, train, _ = _case(1)
    k = 10
    got = topk_items(users, items, torch.arange(N_USERS), [train], k, chunk_size=9)
    scores = users.double().numpy() @ items.double().numpy().T
    excl = train.toarray() > 0
    for u in range(N_USERS):
        ranking = _reference_ranking(scores[u], excl[u])[:k]
        expected = np.full(k, -1)
        expected[: ranking.size] = ranking
        np.testing.assert_array_equal(got[u].numpy(), expected)
    assert got[0, 3:].tolist() == [-1] * (k - 3)  # user 0 has only 3 candidates


def test_all_equal_scores_rank_by_item_index_and_skip_excluded() -> None:
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    got = topk_items(torch.zeros(2, 4), torch.zeros(6, 4), torch.tensor([0, 1]), [exclude], 3)
    assert got.tolist() == [[0, 2, 4], [0, 1, 2]]


def test_scores_do_not_depend_on_the_chunk() -> None:
    # Regression: float32 matmul of a 1-user chunk (gemv) and of a 100-user chunk (gemm) sum
    # in different orders, which flipped near-ties between topk_items and evaluate.
    gen = torch.Generator().manual_seed(5)
    users, items = torch.randn(100, 64, generator=gen), torch.randn(3000, 64, generator=gen)
    item_t64 = items.double().T
    batched = _masked_scores(users, item_t64, torch.arange(100), [])
    single = torch.cat([_masked_scores(users, item_t64, torch.tensor([u]), []) for u in range(100)])
    assert torch.equal(batched, single)


def test_excluded_targets_never_count_as_hits() -> None:
    # the only target item of the user is also excluded: it cannot be retrieved
    target = sp.csr_matrix(np.array([[1, 0, 0]], dtype=np.float32))
    result = evaluate(torch.ones(1, 2), torch.ones(3, 2), target, [target], ks=(3,))
    assert result["recall@3"] == 0.0
    assert result["hit@3"] == 0.0


def test_several_exclude_matrices_are_all_masked() -> None:
    users, items, train, test = _case(2)
    valid_dense = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    valid_dense[3, 4] = 1.0
    valid = sp.csr_matrix(valid_dense)
    both = evaluate(users, items, test, [train, valid], ks=(5,))
    merged = evaluate(users, items, test, [train + valid], ks=(5,))
    assert both == merged


def test_invalid_inputs_are_rejected() -> None:
    users, items, train, test = _case()
    with pytest.raises(ValueError, match="same d"):
        evaluate(users, items[:, :2], test, [train])
    with pytest.raises(ValueError, match=r"\(40, 30\)"):
        evaluate(users, items, test[:5], [train])
    with pytest.raises(ValueError, match="NaN"):
        evaluate(users * float("nan"), items, test, [train])
    with pytest.raises(ValueError, match="ks"):
        evaluate(users, items, test, [train], ks=(31,))
    with pytest.raises(ValueError, match="k must be"):
        topk_items(users, items, torch.tensor([0]), [train], 0)
    with pytest.raises(ValueError, match="users must be"):
        topk_items(users, items, torch.tensor([N_USERS]), [train], 2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluate_on_cuda_equals_cpu() -> None:
    users, items, train, test = _case(3)
    cpu = evaluate(users, items, test, [train], ks=(1, 5, 10), ndcg="lineage", chunk_size=16)
    gpu = evaluate(users.cuda(), items.cuda(), test, [train], ks=(1, 5, 10), ndcg="lineage")
    assert gpu.keys() == cpu.keys()
    for name, value in cpu.items():
        assert gpu[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    on_gpu = Evaluator(test, [train], ks=(1, 5, 10), ndcg="lineage", device="cuda")
    assert on_gpu(users.cuda(), items.cuda()) == pytest.approx(cpu, rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match="evaluator on cuda"):
        on_gpu(users, items)
    all_users = torch.arange(N_USERS)
    top_cpu = topk_items(users, items, all_users, [train], 10)
    top_gpu = topk_items(users.cuda(), items.cuda(), all_users.cuda(), [train], 10)
    assert top_gpu.device.type == "cuda"
    assert torch.equal(top_gpu.cpu(), top_cpu)
