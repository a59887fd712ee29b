"""Vectorised triple and negative sampling: exclusion of training positives, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from training.sampling import InteractionSampler


def _train(seed: int = 0, n_users: int = 40, n_items: int = 30) -> sp.csr_matrix:
    r = sp.random(n_users, n_items, density=0.3, format="csr", random_state=seed)
    r.data[:] = 1.0
    r = r.tolil()
    r[0, :] = 1.0  # user 0 interacted with every item: no negative exists
    r[1, :] = 1.0
    r[1, 7] = 0.0  # user 1 has exactly one possible negative: item 7
    r[2, :] = 0.0  # user 2 has no training item
    return r.tocsr()


def _positive_set(train: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = train.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def test_triples_never_return_a_positive_as_negative_over_many_draws() -> None:
    train = _train()
    dense = torch.from_numpy(train.toarray() > 0)
    sampler = InteractionSampler(train)
    gen = torch.Generator().manual_seed(0)
    seen_users: set[int] = set()
    for _ in range(100):
        users, pos, neg = sampler.triples(512, gen)
        assert users.dtype == pos.dtype == neg.dtype == torch.long
        assert bool(dense[users, pos].all())
        assert not bool(dense[users, neg].any())
        seen_users.update(users.tolist())
    # users without training items (2) or without negatives (0) are never drawn;
    # every other user is drawn (uniform over users)
    expected_users = {u for u in range(train.shape[0]) if 0 < train[u].nnz < train.shape[1]}
    assert seen_users == expected_users
    assert 1 in seen_users


def test_user_with_a_single_non_positive_always_gets_it() -> None:
    sampler = InteractionSampler(_train())
    negs = sampler.negatives(torch.full((50,), 1), 8, torch.Generator().manual_seed(3))
    assert negs.shape == (50, 8)
    assert bool((negs == 7).all())


def test_negatives_per_user_exclude_that_users_positives() -> None:
    train = _train(seed=1)
    positives = _positive_set(train)
    sampler = InteractionSampler(train)
    gen = torch.Generator().manual_seed(1)
    users = torch.tensor([u for u in range(3, 40)] * 20)
    negs = sampler.negatives(users, 16, gen)
    assert negs.shape == (users.numel(), 16)
    for u, row in zip(users.tolist(), negs.tolist(), strict=True):
        assert all((u, j) not in positives for j in row)
    # draws cover every non-positive item of a user (uniform over them)
    user = 5
    allowed = {j for j in range(30) if (user, j) not in positives}
    drawn = set(sampler.negatives(torch.full((400,), user), 4, gen).reshape(-1).tolist())
    assert drawn == allowed


def test_negatives_for_a_user_with_every_item_is_an_error() -> None:
    sampler = InteractionSampler(_train())
    with pytest.raises(ValueError, match="every item"):
        sampler.negatives(torch.tensor([3, 0]), 2, torch.Generator())


def test_same_seed_gives_same_batches() -> None:
    sampler = InteractionSampler(_train())
    a = sampler.triples(64, torch.Generator().manual_seed(11))
    b = sampler.triples(64, torch.Generator().manual_seed(11))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_is_positive_and_interaction_count() -> None:
    train = _train()
    sampler = InteractionSampler(train)
    assert sampler.n_interactions == train.nnz
    users = torch.tensor([1, 1, 2, 0])
    items = torch.tensor([7, 6, 0, 29])
    assert sampler.is_positive(users, items).tolist() == [False, True, False, True]


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="no interactions"):
        InteractionSampler(sp.csr_matrix((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="scipy sparse"):
        InteractionSampler(np.ones((2, 2)))  # type: ignore[arg-type]
    sampler = InteractionSampler(_train())
    with pytest.raises(ValueError, match="batch_size"):
        sampler.triples(0, torch.Generator())
    with pytest.raises(ValueError, match="k must be"):
        sampler.negatives(torch.tensor([3]), 0, torch.Generator())


def _check_epoch_excludes_exactly_the_training_items(device: str) -> None:
    train = _train(seed=2)
    dense = torch.from_numpy(train.toarray() > 0).to(device)
    sampler = InteractionSampler(train, device)
    gen = torch.Generator(device=device).manual_seed(4)
    sample = sampler.epoch(steps=50, batch_size=64, generator=gen, list_negatives=6)
    assert sample.steps == 50 and sample.users.device.type == device
    assert sample.list_negatives is not None and sample.list_negatives.shape == (50 * 64, 6)
    users, pos, neg = sample.users, sample.positives, sample.negatives
    assert bool(dense[users, pos].all())
    assert not bool(dense[users, neg].any())
    assert not bool(dense[users[:, None], sample.list_negatives].any())
    # the steps' slices tile the epoch
    u3, p3, n3 = sample.batch(3)
    assert torch.equal(u3, users[192:256]) and torch.equal(p3, pos[192:256])
    assert torch.equal(n3, neg[192:256])
    assert torch.equal(sample.batch_list_negatives(3), sample.list_negatives[192:256])
    # exactly the training items are excluded: every other item of a user is drawn
    for user in (1, 5, 9):
        drawn = torch.cat([neg[users == user], sample.list_negatives[users == user].reshape(-1)])
        allowed = torch.nonzero(~dense[user]).reshape(-1)
        assert torch.equal(torch.unique(drawn), allowed), user


def test_an_epoch_drawn_at_once_excludes_exactly_the_training_items() -> None:
    _check_epoch_excludes_exactly_the_training_items("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_an_epoch_drawn_on_cuda_excludes_exactly_the_training_items() -> None:
    _check_epoch_excludes_exactly_the_training_items("cuda")


def test_an_epoch_without_list_negatives_refuses_to_slice_them() -> None:
    sample = InteractionSampler(_train()).epoch(2, 8, torch.Generator().manual_seed(0))
    assert sample.list_negatives is None
    with pytest.raises(ValueError, match="without list negatives"):
        sample.batch_list_negatives(0)
    with pytest.raises(ValueError, match="steps must be"):
        InteractionSampler(_train()).epoch(0, 8, torch.Generator())
