"""Synthetic data at scale: the generator's time and the loaders' time on its output.

    PYTHONPATH=. python -m bench.load_scale [--users 1000000] [--items 200000]
        [--density 0.0001] [--dir /tmp/load-scale] [--reference]

Writes a synthetic MMRec folder (two 128-d modalities) with ``training data synth``'s
generator, then times, in this process: the ``.inter`` parse (pyarrow, as the loader
does), the whole ``load_dataset`` (parse, CSR, checks, fingerprint) and, with
``--reference``, the line-by-line parse the loader falls back to for a bad file (the
parser used for every file before). Reports seconds, rows and this process's peak RSS
in ``bench/results/load-scale.md``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, markdown_table, setup_logging, write_report
from training.data import load_dataset
from training.data.mmrec import parse_lines, read_mmrec
from training.data.synthetic import write_synthetic

logger = logging.getLogger(__name__)


def _timed(what: Callable[[], Any]) -> tuple[Any, str, str]:
    """``what()``, its wall seconds and its CPU seconds (all threads of this process)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = what()
    return result, f"{time.perf_counter() - started:.1f}", f"{time.process_time() - cpu:.1f}"


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--density", type=float, default=0.0001)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/load-scale"))
    parser.add_argument("--reference", action="store_true", help="also time the line parser")
    args = parser.parse_args()
    setup_logging()
    folder = args.dir / "synth"
    modalities = {"image": 128, "text": 128}
    _, synth_s, synth_cpu = _timed(
        lambda: write_synthetic(
            folder,
            n_users=args.users,
            n_items=args.items,
            density=args.density,
            modalities=modalities,
        )
    )
    rows_table = [["write_synthetic", synth_s, synth_cpu, f"{_peak_rss_gb():.2f}"]]
    raw, parse_s, parse_cpu = _timed(lambda: read_mmrec(folder))
    rows = sum(pairs.users.size for pairs in raw.splits.values())
    del raw
    peak = f"{_peak_rss_gb():.2f}"
    rows_table.append(["read_mmrec (pyarrow parse)", parse_s, parse_cpu, peak])
    dataset, load_s, load_cpu = _timed(lambda: load_dataset(folder))
    rows_table.append(["load_dataset (whole)", load_s, load_cpu, f"{_peak_rss_gb():.2f}"])
    shape = f"{dataset.n_users:,} users x {dataset.n_items:,} items, {rows:,} rows"
    del dataset
    if args.reference:
        path = folder / "synth.inter"
        text = path.read_text(encoding="utf-8")
        header = text.split("\n", 1)[0].split("\t")
        _, line_s, line_cpu = _timed(lambda: parse_lines(text, header, path.name))
        rows_table.append(["line-by-line parse", line_s, line_cpu, f"{_peak_rss_gb():.2f}"])
    table = markdown_table(
        ["step", "wall seconds", "CPU seconds (all threads)", "peak RSS so far (GB)"], rows_table
    )
    text = write_report(
        RESULTS_DIR / "load-scale.md",
        "Synthetic data at scale: generator and loader times",
        [
            f"{shape}; modalities {modalities}; density {args.density}. One process; "
            "the machine is shared with other engineers' jobs, so wall times vary run to run "
            "and run far above an idle machine's; CPU seconds (summed over pyarrow's threads) "
            "are the steadier figure.",
            table,
        ],
    )
    print(text)


if __name__ == "__main__":
    main()
