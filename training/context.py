"""What both stages share, built once per run: device, graph, prepared features, sampler."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from training.config import Config, EvalConfig
from training.data import Dataset
from training.evaluate import evaluate
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


def configure_threads(threads: int) -> None:
    """Use ``threads`` CPU threads (0: all cores the process may use)."""
    count = threads or len(os.sched_getaffinity(0))
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

    def validate(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> dict[str, float]:
        """Validation metrics (training items masked)."""
        return evaluate(
            user_emb,
            item_emb,
            self.dataset.valid,
            exclude=[self.dataset.train],
            ks=self.eval.ks,
            ndcg=self.eval.ndcg,
            chunk_size=self.eval.chunk_size,
        )

    def test(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> dict[str, float]:
        """Test metrics (training and validation items masked)."""
        return evaluate(
            user_emb,
            item_emb,
            self.dataset.test,
            exclude=[self.dataset.train, self.dataset.valid],
            ks=self.eval.ks,
            ndcg=self.eval.ndcg,
            chunk_size=self.eval.chunk_size,
        )


def build_context(dataset: Dataset, config: Config) -> TrainingContext:
    """Seed, pick the device, build the graph (train only), standardise features, sample."""
    seed_everything(config.run.seed)
    configure_threads(config.run.threads)
    device = resolve_device(config.run.device)
    features = (
        standardize(dataset.features)
        if config.data.standardize_features
        else {name: m.astype(np.float32) for name, m in dataset.features.items()}
    )
    generator = torch.Generator(device=device)
    generator.manual_seed(config.run.seed)
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
    )
