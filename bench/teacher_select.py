"""Teacher candidates chosen by validation, then the chosen teacher's student beside LightGCN alone.

    PYTHONPATH=. python -m bench.teacher_select configs/tiktok-knn.toml --device cuda \\
        --select-seeds 3 --seeds 5 --workers 8

Phase 1 trains stage 1 only for every candidate named (config overrides fixed here, before any
run; the first eight were the 2026-11-26 20:57 selection, on the 2-layer teacher of that time)
and seed ``0 .. select-seeds - 1``; the candidate with the best mean validation Recall@20 of
its teacher is chosen (test columns are reported, they choose nothing). With one ``--names``
there is nothing to choose and phase 1 is skipped. Phase 2 runs, for seeds ``first-seed ..
first-seed + seeds - 1``, the chosen teacher, its distilled student (the config's stage 2) and
LightGCN alone (``training.ablate.run_seed``: the student starts from that seed's teacher).
Runs go to a pool of ``--workers`` processes (one GPU takes several small ones at once); each
finished run is appended to ``--jsonl`` as it ends, the tables go to ``--out`` and stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench.common import setup_logging
from bench.stage2_select import (
    append_row,
    best_by_validation,
    report_header,
    scores,
    summarise,
)
from training.ablate import ALONE, TEACHER_ROW, run_seed
from training.config import Config, apply_overrides, load_config
from training.context import build_context
from training.pipeline import load_data, teacher_stage

CANDIDATES: dict[str, tuple[str, ...]] = {
    "config as is": (),
    "3 layers": ("teacher.n_layers=3",),
    "kNN weight 0.5": ("teacher.item_knn_weight=0.5",),
    "kNN weight 2": ("teacher.item_knn_weight=2.0",),
    "kNN k 40, 1 hop": ("teacher.item_knn_k=40", "teacher.item_knn_hops=1"),
    "L2 1e-3": ("teacher.l2_weight=1e-3",),
    "alpha 0.05": ("teacher.alpha=0.05",),
    "SimGCL 0.01": ("teacher.cl_weight=0.01",),
    "4 layers": ("teacher.n_layers=4",),
    "kNN 3 hops": ("teacher.item_knn_hops=3",),
    "lr 2e-3": ("stage1.lr=2e-3",),
}
STUDENT_ROW = "PromptMM"
PHASE2: dict[str, tuple[str, ...]] = {
    TEACHER_ROW: (),
    STUDENT_ROW: (),
    "LightGCN alone": ALONE,
}


def teacher_task(config: Config, name: str, seed: int) -> list[dict[str, Any]]:
    """Stage 1 of candidate ``name`` with ``seed``: one row."""
    cfg = apply_overrides(config, (*CANDIDATES[name], f"run.seed={seed}"))
    _, summary = teacher_stage(build_context(load_data(cfg), cfg), cfg, None)
    return [{"phase": 1, "seed": seed, "name": name, **scores(summary)}]


def seed_task(config: Config, seed: int) -> list[dict[str, Any]]:
    """Phase 2 for one seed: the teacher, its student and LightGCN alone, one row each."""
    return [
        {"phase": 2, "seed": seed, "name": name, **scores(summary)}
        for name, summary, _ in run_seed(load_data(config), config, seed, PHASE2)
    ]


def _collect(futures: list[Future[list[dict[str, Any]]]], jsonl: Path) -> list[dict[str, Any]]:
    """The tasks' rows, each appended to ``jsonl`` and printed as its task ends."""
    rows: list[dict[str, Any]] = []
    for future in as_completed(futures):
        for row in future.result():
            rows.append(row)
            append_row(jsonl, row)
            print(json.dumps(row), flush=True)
    return sorted(rows, key=lambda row: (row["name"], row["seed"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--select-seeds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--names", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--jsonl", type=Path, default=Path("bench/results/teacher-select.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/teacher-select.md"))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown names {unknown}; known: {list(CANDIDATES)}")
    if min(args.select_seeds, args.seeds, args.workers) < 1 or args.first_seed < 0:
        parser.error("--select-seeds, --seeds and --workers must be >= 1, --first-seed >= 0")
    setup_logging()
    config = load_config(args.config, [*args.overrides, f'run.device="{args.device}"'])
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    report = report_header(f"Teacher candidates chosen by validation: {args.config}", config)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        chosen = args.names[0]
        if len(args.names) > 1:
            phase1 = _collect(
                [
                    pool.submit(teacher_task, config, name, seed)
                    for seed in range(args.select_seeds)
                    for name in args.names
                ],
                args.jsonl,
            )
            chosen = best_by_validation(phase1, args.names)
            report += "## Phase 1: teachers (stage 1 only)\n\n" + summarise(phase1, args.names)
            args.out.write_text(report, encoding="utf-8")
        final = apply_overrides(config, CANDIDATES[chosen])
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        phase2 = _collect([pool.submit(seed_task, final, seed) for seed in seeds], args.jsonl)
    report += (
        f"\n## Phase 2: the chosen teacher ({chosen}), its student, LightGCN alone\n\n"
        + summarise(phase2, ())
    )
    args.out.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
