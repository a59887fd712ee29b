"""Data-parallel training with ``torch.distributed``: one process per device (``torchrun``).

Every rank holds the whole graph and the whole model, so each step's full-graph propagation
is the same on every rank; what differs is the batch: every rank samples its own shard of
the epoch's triples (an independent stream of the sampler, :meth:`Distributed.seed`),
computes the loss on it, and the gradients are averaged over the ranks
(:meth:`Distributed.average_gradients`, one all-reduce of all gradients flattened) before
the optimiser step, so the parameters stay identical on every rank. ``batch_size`` is per
rank: with N ranks an epoch has 1/N of the steps, each over N x ``batch_size`` triples.
Rank 0 validates (and broadcasts the metrics, so every rank takes the same early-stopping
decision), writes the run folder and exports the bundle.

Started without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) nothing here
does anything: :func:`current` is a single rank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Distributed", "current", "process_group"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: its rank among ``world_size`` (and on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, writes the run folder and exports."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` when ``device`` is CUDA, else ``device``."""
        if device.type != "cuda" or not self.enabled:
            return device
        own = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(own)
        return own

    def seed(self, seed: int) -> int:
        """The sampler's seed on this rank: ``seed`` itself on rank 0 (a one-process run is
        unchanged), an independent stream derived from ``(seed, rank)`` on the others."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def broadcast_parameters(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Copy rank 0's values of ``params`` to every rank (the same start everywhere)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for param in params:
                dist.broadcast(param.data, src=0)

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace each gradient of ``params`` by its mean over the ranks (one all-reduce).

        Every rank runs the same code on the same parameters, so the same parameters have a
        gradient on every rank.
        """
        grads = [param.grad for param in params if param.grad is not None]
        if not self.enabled or not grads:
            return
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0, its result sent to every rank (others do not compute)."""
        if not self.enabled:
            return compute()
        box = [compute() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from exc


def current() -> Distributed:
    """The running process group (initialised by :func:`process_group`), else one rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return Distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    return Distributed(
        rank=rank,
        world_size=world,
        local_rank=_env_int("LOCAL_RANK", rank),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
    )


@contextmanager
def process_group(device: str) -> Iterator[Distributed]:
    """Join the process group ``torchrun`` set up (``WORLD_SIZE`` > 1), for the block.

    The backend is NCCL when ``device`` (the config's ``run.device``) may use CUDA and a GPU
    is present, else gloo. Without ``torchrun`` this yields a single rank and does nothing.
    """
    if _env_int("WORLD_SIZE", 1) <= 1 or dist.is_initialized():
        yield current()
        return
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        joined = current()
        logger.info(
            "rank %d of %d (%s backend)", joined.rank, joined.world_size, dist.get_backend()
        )
        yield joined
    finally:
        dist.destroy_process_group()
