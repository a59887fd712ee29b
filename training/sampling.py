"""Vectorised training-triple and negative sampling (no per-sample Python loop).

A training epoch draws all its triples (and the list-KD negatives) at once, on the sampler's
device (:meth:`InteractionSampler.epoch`); the steps then take slices of those tensors, so no
step waits on the host or copies indices to the device.

Negatives exclude the user's *training* positives: a drawn ``(u, i)`` is encoded as the key
``u * I + i`` and looked up with :func:`torch.searchsorted` in the sorted keys of the training
interactions; only the collisions are redrawn, round after round, until none is left.
Randomness comes only from the ``torch.Generator`` passed in (it must live on the sampler's
device), so a seeded generator reproduces the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["EpochSample", "InteractionSampler"]


@dataclass(frozen=True)
class EpochSample:
    """One epoch's triples, drawn at once on the device; :meth:`batch` slices step ``j``.

    ``users``, ``positives``, ``negatives``: LongTensor (steps * batch_size,);
    ``list_negatives``: LongTensor (steps * batch_size, k) of further negatives of each
    triple's user (list-wise KD), or None when none were asked for.
    """

    users: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    list_negatives: torch.Tensor | None
    batch_size: int

    @property
    def steps(self) -> int:
        return self.users.numel() // self.batch_size

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(users, positives, negatives)`` of step ``step`` (views, no copy)."""
        window = slice(step * self.batch_size, (step + 1) * self.batch_size)
        return self.users[window], self.positives[window], self.negatives[window]

    def batch_list_negatives(self, step: int) -> torch.Tensor:
        """(batch_size, k) list-KD negatives of step ``step``."""
        if self.list_negatives is None:
            raise ValueError("this epoch was drawn without list negatives (list_size 0)")
        return self.list_negatives[step * self.batch_size : (step + 1) * self.batch_size]


class InteractionSampler:
    """Draws ``(user, positive, negative)`` triples and per-user negative lists.

    Users are drawn **uniformly over the users with at least one training item** (as in the
    LightGCN reference), then a positive uniformly among that user's training items.
    A user who has interacted with every item has no negative and is never drawn by
    :meth:`triples`; asking :meth:`negatives` for one is an error.

    Args:
        train: (U, I) training interactions (scipy sparse; non-zeros are positives).
        device: where the returned index tensors live.
    """

    def __init__(self, train: sp.spmatrix, device: torch.device | str = "cpu") -> None:
        if not sp.issparse(train) or train.ndim != 2:
            raise ValueError(f"train must be a 2-D scipy sparse matrix, got {type(train).__name__}")
        csr = sp.csr_matrix(train, copy=True)
        csr.eliminate_zeros()
        csr.sum_duplicates()
        csr.sort_indices()
        self.n_users, self.n_items = (int(s) for s in csr.shape)
        if csr.nnz == 0:
            raise ValueError("train has no interactions: nothing to sample")
        self.device = torch.device(device)
        degree = np.diff(csr.indptr)
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), degree)
        keys = rows * self.n_items + csr.indices.astype(np.int64)
        self._keys = torch.from_numpy(keys).to(self.device)  # sorted: CSR order
        self._indptr = torch.from_numpy(csr.indptr.astype(np.int64)).to(self.device)
        self._items = torch.from_numpy(csr.indices.astype(np.int64)).to(self.device)
        self._degree = torch.from_numpy(degree.astype(np.int64)).to(self.device)
        samplable = (degree > 0) & (degree < self.n_items)
        if not samplable.any():
            raise ValueError(
                "every user has either no training item or all items: no triple exists"
            )
        self._users = torch.from_numpy(np.flatnonzero(samplable)).to(self.device)

    @property
    def n_interactions(self) -> int:
        """Number of training interactions (an epoch is usually this many triples)."""
        return int(self._keys.numel())

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether each ``(users[j], items[j])`` is a training interaction: bool, same shape."""
        keys = users * self.n_items + items
        pos = torch.searchsorted(self._keys, keys.reshape(-1)).clamp_(max=self._keys.numel() - 1)
        return (self._keys[pos] == keys.reshape(-1)).reshape(keys.shape)

    def triples(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch of BPR triples.

        Returns:
            ``(users, positives, negatives)``, each a LongTensor (batch_size,) on the device;
            ``(users[j], positives[j])`` is a training interaction and
            ``(users[j], negatives[j])`` is not.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        pick = torch.randint(
            self._users.numel(), (batch_size,), generator=generator, device=self.device
        )
        users = self._users[pick]
        offset = torch.rand(batch_size, generator=generator, device=self.device)
        offset = (offset * self._degree[users]).long().clamp_(max=self._degree[users] - 1)
        positives = self._items[self._indptr[users] + offset]
        negatives = self._draw_negatives(users, generator)
        return users, positives, negatives

    def epoch(
        self, steps: int, batch_size: int, generator: torch.Generator, list_negatives: int = 0
    ) -> EpochSample:
        """``steps`` batches of :meth:`triples` drawn in one go, plus ``list_negatives`` further
        negatives per triple (:meth:`negatives`; 0: none), all on the sampler's device.

        The collisions of the whole epoch are redrawn together, so the host waits on the
        device a few times per epoch rather than per step.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        users, positives, negatives = self.triples(steps * batch_size, generator)
        extra = self.negatives(users, list_negatives, generator) if list_negatives > 0 else None
        return EpochSample(users, positives, negatives, extra, batch_size)

    def negatives(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` negatives per user, each not among that user's training items.

        Negatives of one user are drawn independently (with replacement) and uniformly over
        the items the user has not interacted with in training.

        Args:
            users: LongTensor (B,) on the sampler's device.
            k: negatives per user, >= 1.

        Returns:
            LongTensor (B, k).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        users = users.to(self.device)
        if users.numel() and bool((self._degree[users] >= self.n_items).any()):
            raise ValueError(
                "some requested users interacted with every item: they have no negative"
            )
        repeated = users.reshape(-1, 1).expand(-1, k).reshape(-1)
        return self._draw_negatives(repeated, generator).reshape(users.shape[0], k)

    def _draw_negatives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One uniform non-positive item per entry of ``users`` (rejection, collisions redrawn)."""
        items = torch.randint(self.n_items, users.shape, generator=generator, device=self.device)
        todo = self.is_positive(users, items).nonzero().reshape(-1)
        while todo.numel():
            redraw = torch.randint(
                self.n_items, todo.shape, generator=generator, device=self.device
            )
            items[todo] = redraw
            still = self.is_positive(users[todo], redraw)
            todo = todo[still]
        return items
