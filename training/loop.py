"""The epoch loop both stages share: train, validate every N epochs, early-stop, keep the best.

A stage supplies three callables: one training epoch (returns its mean loss parts), a
validation (returns metrics) and a snapshot of the state to keep (copied tensors). The loop
owns the progress bar, the per-epoch log records and the early-stopping rule: stop once
``patience`` epochs have passed since the best validation ``select_metric``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from training.config import TrainConfig
from training.runs import RunDir

logger = logging.getLogger(__name__)

State = dict[str, dict[str, torch.Tensor]]


class NonFiniteLossError(ValueError):
    """A training loss became NaN or infinite."""


def check_finite(loss: torch.Tensor, parts: Mapping[str, float], where: str) -> float:
    """Return ``loss`` as a float; raise :class:`NonFiniteLossError` if it is NaN or inf."""
    value = float(loss.detach())
    if not math.isfinite(value):
        detail = ", ".join(f"{name}={part:.4g}" for name, part in parts.items())
        raise NonFiniteLossError(
            f"{where}: loss is {value} ({detail}); lower the learning rate or the KD weights"
        )
    return value


def optimise_epoch(
    steps: int,
    step_loss: Callable[[int], tuple[torch.Tensor, Mapping[str, torch.Tensor]]],
    optimizer: torch.optim.Optimizer,
    where: str,
    after_backward: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Run ``steps`` optimiser steps on ``step_loss(step)``; return the mean loss and parts.

    The losses are summed on their device and read back once, at the end of the epoch, so
    the host never waits on the device between steps; a NaN or inf raises
    :class:`NonFiniteLossError` then. ``after_backward`` runs between ``backward`` and the
    optimiser step (the gradient all-reduce of a distributed run).
    """
    names: list[str] = []
    totals: torch.Tensor | None = None
    for step in range(steps):
        loss, parts = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        values = torch.stack([loss.detach(), *(part.detach() for part in parts.values())])
        if totals is None:
            names, totals = ["loss", *parts], values
        else:
            totals = totals + values
    if totals is None:
        raise ValueError(f"{where}: an epoch needs at least one step, got {steps}")
    means = dict(zip(names, (totals / steps).tolist(), strict=True))
    check_finite(torch.tensor(means["loss"]), means, where)
    return means


def total_loss(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of scalar loss tensors (at least one)."""
    return torch.stack(list(parts)).sum()


def copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state dict (kept in memory as the best checkpoint)."""
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


@dataclass(frozen=True)
class FitResult:
    """What the loop selected: the best epoch, its validation metrics and saved state.

    ``seconds`` is the whole loop; ``train_seconds`` only its training epochs (no
    validation), over which ``samples`` triples were trained on (all ranks together).
    """

    best_epoch: int
    best_valid: dict[str, float]
    best_state: State
    epochs_run: int
    seconds: float
    train_seconds: float = 0.0
    samples: int = 0

    def throughput(self) -> dict[str, float]:
        """Training speed: triples per second and mean seconds per training epoch."""
        per_epoch = self.train_seconds / max(1, self.epochs_run)
        rate = self.samples / self.train_seconds if self.train_seconds > 0 else 0.0
        return {"samples_per_s": round(rate, 1), "epoch_s": round(per_epoch, 4)}


def fit(
    stage: str,
    train_epoch: Callable[[int], dict[str, float]],
    validate: Callable[[], dict[str, float]],
    snapshot: Callable[[], State],
    train: TrainConfig,
    select_metric: str,
    run: RunDir | None = None,
    progress: bool = True,
    samples_per_epoch: int = 0,
) -> FitResult:
    """Run up to ``train.max_epochs`` epochs of ``stage`` with early stopping on validation.

    ``samples_per_epoch``: triples one training epoch trains on (for the throughput).
    """
    best_epoch, best_value = 0, -math.inf
    best_valid: dict[str, float] = {}
    best_state: State = snapshot()
    started = time.perf_counter()
    bar = tqdm(range(1, train.max_epochs + 1), desc=stage, disable=not progress, leave=False)
    epoch, train_seconds = 0, 0.0
    for epoch in bar:
        epoch_start = time.perf_counter()
        parts = train_epoch(epoch)  # returns after its losses are read back: work is done
        train_time = time.perf_counter() - epoch_start
        train_seconds += train_time
        record: dict[str, Any] = {"epoch": epoch, **parts, "train_seconds": round(train_time, 4)}
        postfix = {"loss": f"{parts['loss']:.4f}"}
        if epoch % train.eval_every == 0 or epoch == train.max_epochs:
            metrics = validate()
            if select_metric not in metrics:
                raise ValueError(
                    f"eval.select_metric {select_metric!r} is not among {sorted(metrics)}"
                )
            record.update({f"valid_{key}": value for key, value in metrics.items()})
            if metrics[select_metric] > best_value:
                best_epoch, best_value, best_valid = epoch, metrics[select_metric], metrics
                best_state = snapshot()
            postfix[f"val_{select_metric}"] = f"{metrics[select_metric]:.4f}"
            postfix["best"] = f"{best_value:.4f}@{best_epoch}"
        record["seconds"] = round(time.perf_counter() - epoch_start, 3)
        bar.set_postfix(postfix)
        if run is not None:
            run.log_epoch(stage, record)
        logger.debug("%s epoch %d: %s", stage, epoch, record)
        if epoch - best_epoch >= train.patience and best_epoch > 0:
            logger.info("%s: early stop at epoch %d (best %d)", stage, epoch, best_epoch)
            break
    bar.close()
    seconds = time.perf_counter() - started
    logger.info(
        "%s: best validation %s=%.4f at epoch %d of %d (%.1fs)",
        stage,
        select_metric,
        best_value,
        best_epoch,
        epoch,
        seconds,
    )
    return FitResult(
        best_epoch,
        best_valid,
        best_state,
        epoch,
        seconds,
        train_seconds,
        samples_per_epoch * epoch,
    )
