"""The whole run: teacher (stage 1) -> student (stage 2) -> export, with a run folder.

Stage 2 starts from a fresh seed (``run.seed`` + 1 for the sampler, the student's
initialisation and dropout), so a student trained after a cached or loaded teacher sees
exactly the same batches as one trained after stage 1 in the same process.

In a distributed run (:mod:`training.distributed`) every rank trains; only rank 0 writes
the run folder (its path is shared with the others), the checkpoints, the summary and the
bundle. Each stage's summary carries its training throughput (triples per second over the
training epochs, seconds per epoch) and, on CUDA, the peak memory allocated by the stage.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bundle import BundleError, read_bundle
from training.config import Config, from_dict, to_dict
from training.context import (
    TEST_PROTOCOL,
    VALID_PROTOCOL,
    TrainingContext,
    build_context,
    seed_everything,
)
from training.data import Dataset, load_dataset
from training.data.extra import read_interactions, with_interactions
from training.export import check_same_ids, export_student
from training.gpu_usage import UtilisationSampler
from training.loop import FitResult
from training.runs import STUDENT_CKPT, TEACHER_CKPT, RunDir
from training.stage1 import TeacherBundle, build_teacher, train_teacher, validate_teacher
from training.stage2 import StudentResult, train_student

logger = logging.getLogger(__name__)

NDCG_LABEL = {
    "standard": "standard NDCG (IDCG over min(K, |test items|))",
    "lineage": "lineage NDCG (IDCG from the retrieved hits, as in the LATTICE/MMSSL/PromptMM code)",
}


@dataclass
class PipelineResult:
    """What a run produced: metrics per stage, timings, the run folder and the bundle."""

    run_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    teacher: TeacherBundle | None = None
    student: StudentResult | None = None
    bundle_dir: Path | None = None


def load_data(config: Config, path: Path | None = None) -> Dataset:
    """The configured dataset (from ``path`` instead of ``data.path`` when given), with the
    ``data.interactions`` file added to its training split."""
    dataset = load_dataset(path or Path(config.data.path), config.data.format)
    if config.data.interactions is not None:
        pairs = read_interactions(Path(config.data.interactions))
        dataset = with_interactions(dataset, pairs)
        logger.info("added %d interactions from %s", len(pairs), config.data.interactions)
    return dataset


def save_teacher(bundle: TeacherBundle, config: Config, path: Path) -> None:
    """Save the (best) teacher + prompt state with the config that built them."""
    torch.save({**bundle.state(), "config": to_dict(config)}, path)


def load_teacher(path: Path, ctx: TrainingContext) -> TeacherBundle:
    """Rebuild a teacher + prompt from ``teacher.pt`` (or the run folder holding it)."""
    ckpt = path / TEACHER_CKPT if path.is_dir() else path
    if not ckpt.is_file():
        raise ValueError(f"{path}: no teacher checkpoint (expected a run folder or {TEACHER_CKPT})")
    state = torch.load(ckpt, map_location=ctx.device, weights_only=True)
    saved = from_dict(state["config"])
    bundle = build_teacher(ctx, saved)
    bundle.load(state)
    bundle.train(False)
    logger.info("loaded the teacher from %s", ckpt)
    return bundle


def reseed_for_student(ctx: TrainingContext, config: Config) -> None:
    seed_everything(config.run.seed + 1)
    ctx.seed_sampler(config.run.seed + 1)


def _reset_peak_memory(ctx: TrainingContext) -> None:
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)


def _speed(
    ctx: TrainingContext, fit: FitResult, sampler: UtilisationSampler | None
) -> dict[str, float]:
    """The stage's throughput and, on CUDA, its peak allocated memory (GiB) and the card's
    utilisation while it trained (see :mod:`training.gpu_usage`)."""
    speed = fit.throughput()
    if ctx.device.type == "cuda":
        speed["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 2)
    if sampler is not None:
        speed.update(sampler.summary())
    return speed


@contextlib.contextmanager
def _sampled(ctx: TrainingContext) -> Iterator[UtilisationSampler | None]:
    """The GPU utilisation sampler of a stage (``None`` off CUDA), running inside the block."""
    sampler = UtilisationSampler.for_device(ctx.device)
    if sampler is None:
        yield None
        return
    with sampler:
        yield sampler


def teacher_stage(
    ctx: TrainingContext, config: Config, run: RunDir | None
) -> tuple[TeacherBundle, dict[str, Any]]:
    """Stage 1 with its summary (best epoch, validation and test metrics of the teacher)."""
    _reset_peak_memory(ctx)
    with _sampled(ctx) as sampler:
        teacher, fit = train_teacher(ctx, config, run)
    summary = {
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "seconds": round(fit.seconds, 1),
        **_speed(ctx, fit, sampler),
        "valid": fit.best_valid,
        "test": validate_teacher(teacher, ctx, test=True) if ctx.dist.is_main else {},
    }
    if run is not None:
        save_teacher(teacher, config, run.path / TEACHER_CKPT)
    return teacher, summary


def warm_start_tables(
    path: Path, dataset: Dataset, config: Config
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ego tables of the student exported at ``path``, checked against ``dataset``.

    The bundle must carry its layers (``propagation.npz``), index users and items exactly as
    ``dataset`` does (its training split may have grown) and have ``student.dim`` columns.
    """
    try:
        bundle = read_bundle(path)
    except BundleError as exc:
        raise ValueError(f"cannot warm-start from {path}: {exc}") from exc
    if bundle.user_ego is None or bundle.item_layers is None:
        raise ValueError(
            f"cannot warm-start from {bundle.model_version}: it has no propagation.npz "
            "(exported before bundles carried the student's egos); train from scratch"
        )
    check_same_ids(bundle, dataset)
    if bundle.dim != config.student.dim:
        raise ValueError(
            f"cannot warm-start from {bundle.model_version}: dim {bundle.dim}, but "
            f"student.dim = {config.student.dim}"
        )
    return torch.tensor(bundle.user_ego), torch.tensor(bundle.item_layers[0])


def student_stage(
    ctx: TrainingContext,
    config: Config,
    teacher: TeacherBundle | None,
    run: RunDir | None,
    warm_start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[StudentResult, dict[str, Any]]:
    """Stage 2 (from a fresh seed) with its summary."""
    reseed_for_student(ctx, config)
    _reset_peak_memory(ctx)
    with _sampled(ctx) as sampler:
        result = train_student(ctx, config, teacher, run, warm_start)
    summary = {
        "best_epoch": result.fit.best_epoch,
        "epochs_run": result.fit.epochs_run,
        "seconds": round(result.fit.seconds, 1),
        **_speed(ctx, result.fit, sampler),
        "valid": result.valid,
        "test": result.test,
    }
    if run is not None:
        torch.save({**result.fit.best_state, "config": to_dict(config)}, run.path / STUDENT_CKPT)
    return result, summary


def _needs_teacher(config: Config) -> bool:
    kd = config.kd
    return kd.pair_weight > 0 or kd.list_weight > 0 or kd.emb_weight > 0


def run_pipeline(
    config: Config,
    *,
    student: bool = True,
    export: bool = True,
    teacher_from: Path | None = None,
    dataset: Dataset | None = None,
    warm_start_from: Path | None = None,
) -> PipelineResult:
    """Train the teacher (unless disabled or loaded), then the student, then export it.

    ``warm_start_from`` (a bundle) starts the student from that exported student's egos.
    """
    started = time.perf_counter()
    dataset = dataset or load_data(config)
    ctx = build_context(dataset, config)
    shared_run = ctx.dist.from_main(lambda: RunDir.create(Path(config.run.runs_dir), dataset.name))
    run = shared_run if ctx.dist.is_main else None  # only rank 0 writes
    resolved = to_dict(config)
    if run is not None:
        run.save_config(resolved)
    result = PipelineResult(run_dir=shared_run.path)
    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "data_fingerprint": dataset.fingerprint,
        "device": str(ctx.device),
        "processes": ctx.dist.world_size,
        "protocol": {"valid": VALID_PROTOCOL, "test": TEST_PROTOCOL},
        "ndcg": NDCG_LABEL[config.eval.ndcg],
        "selection": f"best validation {config.eval.select_metric}; test reported at that epoch",
    }
    if teacher_from is not None:
        result.teacher = load_teacher(teacher_from, ctx)
    elif config.stage1.enabled:
        result.teacher, summary["teacher"] = teacher_stage(ctx, config, run)
    if student and config.stage2.enabled:
        if result.teacher is None and _needs_teacher(config):
            raise ValueError(
                "the student's KD weights are not all 0 but there is no teacher: enable stage1, "
                "pass --teacher RUN_DIR, or set kd.pair_weight/list_weight/emb_weight = 0"
            )
        warm = None
        if warm_start_from is not None:
            warm = warm_start_tables(warm_start_from, dataset, config)
            summary["warm_start"] = str(warm_start_from)
        result.student, summary["student"] = student_stage(ctx, config, result.teacher, run, warm)
        if export and ctx.dist.is_main:
            metrics = {key: summary["student"][key] for key in ("valid", "test", "best_epoch")}
            metrics["protocol"] = summary["protocol"]
            metrics["ndcg"] = summary["ndcg"]
            result.bundle_dir = export_student(
                dataset,
                result.student.user_emb,
                result.student.item_emb,
                resolved,
                metrics,
                Path(config.run.models_dir),
                user_ego=result.student.user_ego,
                item_layers=result.student.item_layers,
            )
            summary["bundle"] = str(result.bundle_dir)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    if run is not None:
        run.save_summary(summary)
        run.plot(config.eval.select_metric)
    result.summary = summary
    return result
