"""Ablations and baselines (method.md section 7) over seeds, as a Markdown table.

Every variant is a set of config overrides on the experiment's config. Within one seed the
teacher depends only on the data, teacher, prompt and stage-1 settings, so variants that
share those reuse one trained teacher (a copy: stage 2 tunes the prompt); the student stage
always restarts from the same seed (see :mod:`training.pipeline`), so the comparison is
the same as training each variant from scratch. The "Teacher" row is the teacher of the
full PromptMM variant, evaluated on its own scores. The "GF-CF" row is the training-free
graph filter of :mod:`training.gfcf` (its rank and weight chosen on validation): it does
not depend on the seed, so it is computed once and counts once per seed, with a spread of 0.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import multiprocessing
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from training.config import Config, apply_overrides, to_dict
from training.context import TEST_PROTOCOL, build_context
from training.data import Dataset
from training.gfcf import fit_gfcf
from training.pipeline import NDCG_LABEL, load_data, student_stage, teacher_stage
from training.stage1 import TeacherBundle

logger = logging.getLogger(__name__)

NO_KD = ("kd.pair_weight=0", "kd.list_weight=0", "kd.emb_weight=0")
ALONE = ("stage1.enabled=false", "student.init_from_teacher=false", *NO_KD)
"""A baseline trained alone: no teacher to distil from or to start from."""
VARIANTS: dict[str, tuple[str, ...]] = {
    "PromptMM": (),
    "w/o-Prompt": ("prompt.rate=0",),
    "w/o-PairKD": ("kd.pair_weight=0",),
    "w/o-ListKD": ("kd.list_weight=0",),
    "w/o-disentangle": ("kd.disentangle=false",),
    "LightGCN alone": ALONE,
    "MF-BPR": (*ALONE, "student.n_layers=0"),
}
TEACHER_ROW = "Teacher"
GFCF_ROW = "GF-CF (training-free)"
COLUMNS = ("recall@20", "ndcg@20", "recall@50", "ndcg@50")
TEACHER_SECTIONS = ("data", "teacher", "prompt", "stage1", "run")


def teacher_key(config: Config) -> str:
    """What a trained teacher depends on: configs with equal keys can share one teacher."""
    resolved = to_dict(config)
    return json.dumps({name: resolved[name] for name in TEACHER_SECTIONS}, sort_keys=True)


def _check_variants(names: Sequence[str]) -> list[str]:
    known = [*VARIANTS, TEACHER_ROW, GFCF_ROW]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {unknown}; known: {known}")
    return list(names)


def run_seed(
    dataset: Dataset, config: Config, seed: int, variants: Mapping[str, Sequence[str]]
) -> Iterator[tuple[str, dict[str, Any], float]]:
    """Train each variant (config overrides) with ``seed``; yield (name, summary, seconds).

    Variants with equal :func:`teacher_key` share one trained teacher (each student gets a
    copy); the :data:`TEACHER_ROW` variant yields the summary of its teacher instead of a
    student's. A variant's seconds include the teacher it was the first to need.
    """
    base = dataclasses.replace(config, run=dataclasses.replace(config.run, seed=seed))
    teachers: dict[str, tuple[TeacherBundle, dict[str, Any]]] = {}
    for name, overrides in variants.items():
        cfg = apply_overrides(base, overrides)
        started = time.perf_counter()
        ctx = build_context(dataset, cfg)
        teacher = None
        if cfg.stage1.enabled:
            key = teacher_key(cfg)
            if key not in teachers:
                teachers[key] = teacher_stage(ctx, cfg, None)
            if name == TEACHER_ROW:
                yield name, teachers[key][1], time.perf_counter() - started
                continue
            teacher = copy.deepcopy(teachers[key][0])
        _, summary = student_stage(ctx, cfg, teacher, None)
        yield name, summary, time.perf_counter() - started


def _seed_rows(
    config: Config, seed: int, variants: Mapping[str, Sequence[str]]
) -> list[tuple[str, dict[str, Any], float]]:
    """:func:`run_seed` as a list, loading the data itself (a worker process's task)."""
    return list(run_seed(load_data(config), config, seed, variants))


def _seed_results(
    dataset: Dataset,
    config: Config,
    seeds: Sequence[int],
    variants: Mapping[str, Sequence[str]],
    jobs: int,
) -> Iterator[tuple[int, list[tuple[str, dict[str, Any], float]]]]:
    if jobs == 1:
        for seed in seeds:
            yield seed, list(run_seed(dataset, config, seed, variants))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(seeds)), mp_context=context) as pool:
        futures = [pool.submit(_seed_rows, config, seed, variants) for seed in seeds]
        for seed, future in zip(seeds, futures, strict=True):
            yield seed, future.result()


def run_ablation(
    config: Config, seeds: int = 3, variants: Sequence[str] | None = None, jobs: int = 1
) -> str:
    """Run the variants for seeds ``run.seed .. run.seed + seeds - 1``; return the table.

    ``jobs`` > 1 trains that many seeds at once, each in its own process (several small runs
    share one GPU well); the results are the same as with one job. The per-seed test metrics
    are also logged; the table gives mean ± std (sample std).
    """
    if seeds < 1 or jobs < 1:
        raise ValueError(f"--seeds and --jobs must be >= 1, got {seeds} and {jobs}")
    names = _check_variants(variants or [*VARIANTS, TEACHER_ROW, GFCF_ROW])
    dataset = load_data(config)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    seconds: dict[str, float] = dict.fromkeys(names, 0.0)
    if GFCF_ROW in names:
        gfcf = fit_gfcf(build_context(dataset, config), config.eval.select_metric)
        results[GFCF_ROW] = [gfcf["test"]] * seeds
        seconds[GFCF_ROW] = gfcf["seconds"] * seeds
        logger.info(
            "%s: rank %d, alpha %g, test %s", GFCF_ROW, gfcf["rank"], gfcf["alpha"], gfcf["test"]
        )
    chosen = {name: VARIANTS.get(name, ()) for name in names if name != GFCF_ROW}
    first = config.run.seed
    for seed, rows in _seed_results(dataset, config, range(first, first + seeds), chosen, jobs):
        for name, summary, spent in rows:
            results[name].append(summary["test"])
            seconds[name] += spent
            logger.info("seed %d %s: test %s", seed, name, summary["test"])
    header = (
        f"{dataset.name}, {seeds} seed(s) from {config.run.seed}; "
        f"{NDCG_LABEL[config.eval.ndcg]}; {TEST_PROTOCOL}; "
        f"model selection on validation {config.eval.select_metric}"
    )
    return format_table(header, results, seconds)


def _cell(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def format_table(
    header: str, results: dict[str, list[dict[str, float]]], seconds: dict[str, float]
) -> str:
    """A Markdown table of mean ± std per variant and metric (test split)."""
    lines = [
        f"Test metrics, mean ± std over seeds. {header}.",
        "",
        "| variant | " + " | ".join(COLUMNS) + " | seconds/seed |",
        "|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for name, runs in results.items():
        cells = [_cell([run[column] for run in runs]) for column in COLUMNS]
        per_seed = seconds[name] / max(1, len(runs))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {per_seed:.0f} |")
    return "\n".join(lines) + "\n"


def write_table(table: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table, encoding="utf-8")
