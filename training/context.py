"""What both stages share, built once per run: device, graph, prepared features, sampler,
the evaluators of the validation and test splits, and the process's place in a distributed run.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch

from training.config import Config, EvalConfig
from training.data import Dataset
from training.distributed import Distributed, current
from training.evaluate import Evaluator
from training.graph import normalized_adjacency
from training.sampling import InteractionSampler

logger = logging.getLogger(__name__)

TEST_PROTOCOL = "test: all-ranking over every item, train and validation items masked"
VALID_PROTOCOL = "validation: all-ranking over every item, train items masked"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("run.device = 'cuda' but no CUDA GPU is available; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"run.device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_threads(threads: int, processes: int = 1) -> None:
    """Use ``threads`` CPU threads (0: the cores the process may use, shared by the
    ``processes`` training processes of this machine)."""
    count = threads or len(os.sched_getaffinity(0)) // processes
    torch.set_num_threads(max(1, count))


def standardize(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Standardise each column to mean 0, std 1 (constant columns are only centred)."""
    prepared = {}
    for name, matrix in features.items():
        values = matrix.astype(np.float32)
        std = values.std(axis=0, keepdims=True)
        prepared[name] = (values - values.mean(axis=0, keepdims=True)) / np.where(
            std > 0, std, 1.0
        ).astype(np.float32)
    return prepared


@dataclass(frozen=True)
class TrainingContext:
    """The dataset and everything derived from it that stays fixed during training."""

    dataset: Dataset
    device: torch.device
    adj: torch.Tensor
    features: dict[str, torch.Tensor]
    prepared_features: dict[str, np.ndarray]
    sampler: InteractionSampler
    generator: torch.Generator
    eval: EvalConfig
    dist: Distributed = field(default_factory=Distributed)

    def _evaluator(self, target: sp.spmatrix, exclude: list[sp.spmatrix]) -> Evaluator:
        return Evaluator(
            target,
            exclude,
            ks=self.eval.ks,
            ndcg=self.eval.ndcg,
            chunk_size=self.eval.chunk_size,
            device=self.device,
        )

    @cached_property
    def _valid(self) -> Evaluator:
        return self._evaluator(self.dataset.valid, [self.dataset.train])

    @cached_property
    def _test(self) -> Evaluator:
        return self._evaluator(self.dataset.test, [self.dataset.train, self.dataset.valid])

    def validate(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> dict[str, float]:
        """Validation metrics (training items masked); the split goes to the device once."""
        return self._valid(user_emb, item_emb)

    def test(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> dict[str, float]:
        """Test metrics (training and validation items masked)."""
        return self._test(user_emb, item_emb)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimiser steps of one epoch: the training interactions once over, in batches of
        ``batch_size`` triples on every rank."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return max(1, math.ceil(int(self.dataset.train.nnz) / (batch_size * self.dist.world_size)))

    def share_parameters(self, params: Sequence[torch.nn.Parameter]) -> Callable[[], None] | None:
        """Start every rank from rank 0's ``params``; return the gradient averaging to run
        after each backward (None in a one-process run)."""
        if not self.dist.enabled:
            return None
        self.dist.broadcast_parameters(params)
        return lambda: self.dist.average_gradients(params)

    def seed_sampler(self, seed: int) -> None:
        """Restart this rank's sampling stream from ``seed`` (see :meth:`Distributed.seed`)."""
        self.generator.manual_seed(self.dist.seed(seed))


def build_context(dataset: Dataset, config: Config) -> TrainingContext:
    """Seed, pick the device, build the graph (train only), standardise features, sample."""
    seed_everything(config.run.seed)
    dist = current()
    configure_threads(config.run.threads, dist.local_world_size)
    device = dist.device(resolve_device(config.run.device))
    features = (
        standardize(dataset.features)
        if config.data.standardize_features
        else {name: m.astype(np.float32) for name, m in dataset.features.items()}
    )
    generator = torch.Generator(device=device)
    generator.manual_seed(dist.seed(config.run.seed))
    logger.info(
        "%s: %d users, %d items, %d train interactions, modalities %s, device %s",
        dataset.name,
        dataset.n_users,
        dataset.n_items,
        dataset.train.nnz,
        {name: m.shape[1] for name, m in features.items()},
        device,
    )
    return TrainingContext(
        dataset=dataset,
        device=device,
        adj=normalized_adjacency(dataset.train).to(device),
        features={name: torch.from_numpy(m).to(device) for name, m in features.items()},
        prepared_features=features,
        sampler=InteractionSampler(dataset.train, device),
        generator=generator,
        eval=config.eval,
        dist=dist,
    )
