"""The whole training pipeline (teacher -> student -> export) with a per-stage timing table.

Meant for the GPU machine (``--device cuda``) and for CPU comparisons, run from the repo root:

    PYTHONPATH=. python -m bench.pipeline_timing configs/tiktok.toml --device cuda
    PYTHONPATH=. python -m bench.pipeline_timing configs/synthetic.toml --set data.path=DIR

Prints a Markdown table (device and card name, epochs and seconds per stage, seconds per
training epoch, triples per second, CUDA peak memory, test Recall@20 / NDCG@20) and writes
it to ``--out`` (default ``bench/results/pipeline-<device>.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def device_name(device: str) -> str:
    """A human name for the device the run used (the CUDA card's name, or the CPU)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def _utilisation(part: dict[str, Any]) -> str:
    if "gpu_util_mean" not in part:
        return "-"
    return f"{part['gpu_util_mean']} ({part['gpu_util_busy_pct']} %)"


def table(summary: dict[str, Any], command: str) -> str:
    """The Markdown report of one pipeline summary."""
    device = str(summary["device"])
    lines = [
        f"# Training pipeline timing: {summary['dataset']}",
        "",
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- device: {device} = {device_name(device)}",
        f"- command: `{command}`",
        f"- protocol: {summary['protocol']['test']}; {summary['ndcg']}",
        "",
        "| stage | best epoch | epochs run | seconds | s / training epoch | triples/s "
        "| peak GiB | GPU util % (>= 50 % share) | test R@20 | test N@20 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stage in ("teacher", "student"):
        if stage in summary:
            part = summary[stage]
            lines.append(
                f"| {stage} | {part['best_epoch']} | {part['epochs_run']} | {part['seconds']} "
                f"| {part['epoch_s']} | {part['samples_per_s']:.0f} "
                f"| {part.get('peak_memory_gib', '-')} | {_utilisation(part)} "
                f"| {part['test']['recall@20']:.4f} | {part['test']['ndcg@20']:.4f} |"
            )
    lines.append(f"| total (incl. data, export) | | | {summary['seconds']} | | | | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from training.config import load_config
    from training.pipeline import run_pipeline

    overrides = [*args.overrides, f'run.device="{args.device}"']
    result = run_pipeline(load_config(args.config, overrides))
    report = table(result.summary, "python -m bench.pipeline_timing " + " ".join(sys.argv[1:]))
    out = args.out or Path("bench/results") / f"pipeline-{result.summary['device']}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
