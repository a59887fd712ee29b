"""Stage-2 candidates on shared teachers, chosen by validation, with LightGCN alone beside them.

    PYTHONPATH=. python -m bench.stage2_select configs/tiktok-knn.toml --device cuda --seeds 5

For each seed one teacher is trained (the config's stage 1) and every candidate student starts
from a copy of it (``training.ablate.run_seed``, the loop of ``training ablate``); the
baselines train alone. The candidates are fixed here, before any run. A candidate is chosen by
its mean best-validation Recall@20 over the seeds; the test columns are reported for every row
but choose nothing. Each finished run is appended to ``--jsonl`` as it ends (partial results
survive a time limit); the Markdown table goes to ``--out`` and stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import invoked_command, markdown_table, setup_logging
from bench.pipeline_timing import device_name
from training.ablate import ALONE, TEACHER_ROW, run_seed
from training.config import Config, load_config
from training.context import resolve_device
from training.pipeline import load_data

EVERY_EPOCH = "stage2.eval_every=1"
CANDIDATES: dict[str, tuple[str, ...]] = {
    "config as is": (),
    "eval every epoch": (EVERY_EPOCH,),
    "lr 2e-4, eval every epoch": ("stage2.lr=2e-4", EVERY_EPOCH),
    "EmbKD 0.05, eval every epoch": ("kd.emb_weight=0.05", EVERY_EPOCH),
    "PairKD 5 + ListKD 0.1, eval every epoch": (
        "kd.pair_weight=5",
        "kd.list_weight=0.1",
        EVERY_EPOCH,
    ),
}
BASELINES: dict[str, tuple[str, ...]] = {
    "LightGCN alone": ALONE,
    "LightGCN alone, patience 30, 90 epochs": (
        *ALONE,
        "stage2.patience=30",
        "stage2.max_epochs=90",
    ),
}
METRIC = "recall@20"


def variants(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The overrides of ``names``, after the teacher's row when any candidate needs it."""
    chosen = {name: CANDIDATES[name] for name in names if name in CANDIDATES}
    teacher = {TEACHER_ROW: ()} if chosen else {}
    return {**teacher, **chosen, **{name: BASELINES[name] for name in names if name in BASELINES}}


def scores(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "valid": summary["valid"][METRIC],
        "test": summary["test"][METRIC],
        "test_ndcg": summary["test"]["ndcg@20"],
        "best_epoch": summary["best_epoch"],
        "seconds": summary["seconds"],
    }


def report_header(title: str, config: Config) -> str:
    """A report's title, start time, device and command line, in Markdown."""
    return (
        f"# {title}\n\n"
        f"- started: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"- device: {device_name(str(resolve_device(config.run.device)))}\n"
        f"- command: `{invoked_command()}`\n\n"
    )


def append_row(jsonl: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to ``jsonl`` as one JSON line (finished runs survive a time limit)."""
    with jsonl.open("a", encoding="utf-8") as sink:
        sink.write(json.dumps(row) + "\n")


def best_by_validation(rows: Sequence[dict[str, Any]], candidates: Collection[str]) -> str:
    """The name among ``candidates`` with the best mean validation score ("" if none ran)."""
    valid: dict[str, list[float]] = {}
    for row in rows:
        if row["name"] in candidates:
            valid.setdefault(row["name"], []).append(row["valid"])
    return max(valid, key=lambda name: statistics.fmean(valid[name])) if valid else ""


def summarise(rows: Sequence[dict[str, Any]], candidates: Collection[str] = CANDIDATES) -> str:
    """Mean ± std per row name, the paired test difference to LightGCN alone, and the
    candidate (one of ``candidates``) with the best mean validation score, if any ran."""
    by_name: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], {})[row["seed"]] = row
    alone = by_name.get("LightGCN alone", {})

    def cell(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.4f} ± {std:.4f}"

    table = []
    for name, runs in by_name.items():
        seeds = sorted(runs)
        paired = [runs[s]["test"] - alone[s]["test"] for s in seeds if s in alone]
        table.append(
            [
                name,
                len(seeds),
                cell([runs[s]["valid"] for s in seeds]),
                cell([runs[s]["test"] for s in seeds]),
                cell([runs[s]["test_ndcg"] for s in seeds]),
                " ".join(f"{d:+.4f}" for d in paired) if name != "LightGCN alone" else "",
                " ".join(str(runs[s]["best_epoch"]) for s in seeds),
            ]
        )
    chosen = best_by_validation(rows, candidates)
    headers = (
        "row",
        "seeds",
        f"valid {METRIC}",
        f"test {METRIC}",
        "test ndcg@20",
        "paired test diff vs LightGCN alone",
        "best epochs",
    )
    choice = f"\nChosen by validation: **{chosen}**\n" if chosen else "\n"
    return markdown_table(headers, table) + choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--names", nargs="+", default=[*CANDIDATES, *BASELINES])
    parser.add_argument("--jsonl", type=Path, default=Path("bench/results/stage2-select.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/stage2-select.md"))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in CANDIDATES and name not in BASELINES]
    if unknown:
        parser.error(f"unknown names {unknown}; known: {[*CANDIDATES, *BASELINES]}")
    setup_logging()
    config = load_config(args.config, [*args.overrides, f'run.device="{args.device}"'])
    dataset = load_data(config)
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    header = report_header(
        f"Stage-2 candidates on shared teachers: {dataset.name}, {args.config}", config
    )
    rows: list[dict[str, Any]] = []
    for seed in range(config.run.seed, config.run.seed + args.seeds):
        for name, summary, _ in run_seed(dataset, config, seed, variants(args.names)):
            row = {"seed": seed, "name": name, **scores(summary)}
            rows.append(row)
            append_row(args.jsonl, row)
        report = header + summarise(rows)
        args.out.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
