"""Training sub-commands: ``run``, ``teacher``, ``student``, ``evaluate``, ``ablate``.

Each handler takes the parsed arguments and returns the process exit code. Results go to
the log (stderr) and to files; a short human summary is written to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

METRICS_SHOWN = ("recall@20", "ndcg@20", "recall@50", "ndcg@50")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="TOML config file (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set stage2.lr=0.005",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="shorthand for --set run.device=..."
    )


def _load(args: argparse.Namespace) -> Any:
    from training.config import load_config

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"run.device={json.dumps(args.device)}")
    return load_config(args.config, overrides)


def _line(stage: str, split: str, metrics: dict[str, float]) -> str:
    shown = "  ".join(f"{key}={metrics[key]:.4f}" for key in METRICS_SHOWN if key in metrics)
    return f"{stage:<8} {split:<5} {shown}"


def _gpu_note(part: dict[str, Any]) -> str:
    if "gpu_util_mean" not in part:
        return ""
    return (
        f"; GPU {part['peak_memory_gib']} GiB peak, utilisation {part['gpu_util_mean']} % mean, "
        f">= 50 % in {part['gpu_util_busy_pct']} % of {part['gpu_util_samples']} samples"
    )


def _report(summary: dict[str, Any]) -> None:
    processes = f" x {summary['processes']} processes" if summary["processes"] > 1 else ""
    lines = [f"dataset {summary['dataset']} on {summary['device']}{processes}; {summary['ndcg']}"]
    lines += [summary["protocol"]["valid"], summary["protocol"]["test"], summary["selection"]]
    for stage in ("teacher", "student"):
        if stage in summary:
            part = summary[stage]
            lines.append(
                f"{stage}: best epoch {part['best_epoch']} of {part['epochs_run']} "
                f"({part['seconds']}s; {part['epoch_s']}s per training epoch, "
                f"{part['samples_per_s']:.0f} triples/s{_gpu_note(part)})"
            )
            lines += [_line(stage, "valid", part["valid"]), _line(stage, "test", part["test"])]
    if "bundle" in summary:
        lines.append(f"bundle: {summary['bundle']}")
    lines.append(f"total {summary['seconds']}s")
    sys.stdout.write("\n".join(lines) + "\n")


def _pipeline(args: argparse.Namespace, config: Any = None, **options: Any) -> int:
    """Run the pipeline (on every rank when started by ``torchrun``); rank 0 reports."""
    from training.distributed import process_group
    from training.pipeline import run_pipeline

    config = config or _load(args)
    with process_group(config.run.device) as dist:
        if not dist.is_main:
            logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs the run
        result = run_pipeline(config, **options)
    if dist.is_main:
        _report(result.summary)
        sys.stdout.write(f"run folder: {result.run_dir}\n")
    return 0


def run_command(args: argparse.Namespace) -> int:
    return _pipeline(args)


def teacher_command(args: argparse.Namespace) -> int:
    return _pipeline(args, student=False, export=False)


def student_command(args: argparse.Namespace) -> int:
    import dataclasses

    config = _load(args)
    stage1 = dataclasses.replace(config.stage1, enabled=False)
    return _pipeline(
        args,
        dataclasses.replace(config, stage1=stage1),
        export=not args.no_export,
        teacher_from=args.teacher,
        warm_start_from=args.warm_start,
    )


def evaluate_command(args: argparse.Namespace) -> int:
    from bundle import BundleError, read_bundle
    from training.config import REPO_ROOT, from_dict, resolve_paths
    from training.export import evaluate_bundle
    from training.pipeline import NDCG_LABEL, load_data

    try:
        saved = resolve_paths(from_dict(read_bundle(args.bundle).config), REPO_ROOT)
    except BundleError as exc:
        raise ValueError(f"cannot evaluate {args.bundle}: {exc}") from exc
    dataset = load_data(saved, args.data)
    bundle, metrics = evaluate_bundle(args.bundle, dataset, saved.eval)
    sys.stdout.write(
        f"bundle {bundle.model_version} on {dataset.name}; {NDCG_LABEL[saved.eval.ndcg]}\n"
        "valid: train items masked; test: train and validation items masked\n"
    )
    for split, values in metrics.items():
        sys.stdout.write(_line("student", split, values) + "\n")
    return 0


def ablate_command(args: argparse.Namespace) -> int:
    from training.ablate import run_ablation, write_table

    config = _load(args)
    table = run_ablation(config, seeds=args.seeds, variants=args.variants, jobs=args.jobs)
    write_table(table, args.out)
    sys.stdout.write(table)
    return 0


def tune_command(args: argparse.Namespace) -> int:
    from training.tune import TuneSpec, default_study_dir, run_tuning

    config = _load(args)
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"run.device={json.dumps(args.device)}")
    spec = TuneSpec(
        config_path=args.config,
        overrides=tuple(overrides),
        variant=args.variant,
        study_dir=args.out or default_study_dir(args.config, config, args.variant),
        trials=args.trials,
    )
    result = run_tuning(spec, jobs=args.jobs)
    metric = config.eval.select_metric
    chosen = ", ".join(f"{name}={value!r}" for name, value in result.best_params.items())
    sys.stdout.write(
        f"{result.finished} trial(s) finished ({result.pruned} pruned); chosen on validation "
        f"{metric} = {result.best_value:.4f}: {chosen}\n"
        f"tuned config: {result.tuned_config}\n"
        f"{_line('chosen', 'test', result.test)}\n"
    )
    return 0


def register(sub: Any) -> None:
    """Add the training sub-commands to ``sub`` (an argparse sub-parsers action)."""
    run = sub.add_parser("run", help="teacher -> student -> export")
    _add_config_args(run)
    run.set_defaults(handler=run_command)

    teacher = sub.add_parser("teacher", help="stage 1 only: train teacher + prompt")
    _add_config_args(teacher)
    teacher.set_defaults(handler=teacher_command)

    student = sub.add_parser("student", help="stage 2 only: train (and export) the student")
    _add_config_args(student)
    student.add_argument(
        "--teacher", type=Path, help="run folder or teacher.pt of a stage-1 run (omit: no KD)"
    )
    student.add_argument(
        "--warm-start",
        type=Path,
        metavar="BUNDLE",
        help="start from this exported student's egos (fine-tune it on the config's data)",
    )
    student.add_argument("--no-export", action="store_true", help="do not write a bundle")
    student.set_defaults(handler=student_command)

    evaluate = sub.add_parser("evaluate", help="metrics of an exported bundle")
    evaluate.add_argument("bundle", type=Path, help="bundle directory or models/<dataset> root")
    evaluate.add_argument(
        "--data", type=Path, help="dataset folder (default: the bundle config's data.path)"
    )
    evaluate.set_defaults(handler=evaluate_command)

    ablate = sub.add_parser("ablate", help="ablations and baselines over seeds -> Markdown")
    _add_config_args(ablate)
    ablate.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    ablate.add_argument("--out", type=Path, required=True, help="Markdown table to write")
    ablate.add_argument(
        "--jobs", type=int, default=1, help="seeds trained at once, one process each (default 1)"
    )
    ablate.add_argument(
        "--variants", nargs="+", help="subset of variants to run (default: all)", default=None
    )
    ablate.set_defaults(handler=ablate_command)

    tune = sub.add_parser("tune", help="search the config's [tune] spaces with Optuna")
    _add_config_args(tune)
    tune.add_argument("--trials", type=int, required=True, help="trials in the study, in all")
    tune.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    tune.add_argument(
        "--variant", help='tune this ablation variant instead of PromptMM, e.g. "LightGCN alone"'
    )
    tune.add_argument(
        "--out", type=Path, help="study folder (default: <run.runs_dir>/tune-<config name>)"
    )
    tune.set_defaults(handler=tune_command)
